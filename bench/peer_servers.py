"""The peers of bench/peers.py, each with its defaults, serving the
servicers of bench/servicers.py:

    python -m bench.peer_servers KIND [--listen ADDR]

    grpcio         grpc.server(ThreadPoolExecutor(10))
    grpcio-aio     grpc.aio.server()
    native         pygrpc_native.server(ThreadPoolExecutor(10))
    native-aio     pygrpc_native.aio.server()
    native-front   pygrpc_native.NativeGrpcFront with a hand-written loop
                   (recv_batch, respond): bench.Servicer/Echo only

Prints ``listening on ADDR`` once it serves, like our hosts; SIGTERM stops
it.  pygrpc-native is installed from PyPI by bench/run.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from typing import Any

from bench.servicers import add_all

# grpcio's examples and pygrpc-native's README start servers with a pool of
# 10 to 16 threads; both get the same.
POOL_THREADS = 10


def _announce(listen: str, port: int) -> None:
    print(f"listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)


def _serve_sync(server: Any, listen: str) -> None:
    add_all(server, asynchronous=False)
    port = server.add_insecure_port(listen)
    server.start()
    _announce(listen, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


async def _serve_async(make_server: Any, listen: str) -> None:
    server = make_server()  # in the running loop, which it binds to
    add_all(server, asynchronous=True)
    port = server.add_insecure_port(listen)
    await server.start()
    _announce(listen, port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def _serve_front(listen: str) -> None:
    """The peer's fastest shape: its low-level event loop, as its README
    shows it, answering bench.Servicer/Echo with the request's bytes."""
    import pygrpc_native

    front = pygrpc_native.NativeGrpcFront(listen, [("/bench.Servicer/Echo", False)])
    front.start()
    _announce(listen, front.bound_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    call = pygrpc_native.EVENT_CALL
    # A timeout so that the signal handler gets its turn.
    while not stop.is_set():
        events = front.recv_batch(256, 100)
        if events is None:
            break
        for kind, call_id, _method, payload, _client in events:
            if kind == call and payload is not None:
                front.respond(call_id, payload)
    front.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("grpcio", "grpcio-aio", "native", "native-aio",
                                         "native-front"))
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    if args.kind == "grpcio":
        import grpc

        _serve_sync(grpc.server(futures.ThreadPoolExecutor(POOL_THREADS)), args.listen)
    elif args.kind == "grpcio-aio":
        from grpc import aio

        asyncio.run(_serve_async(aio.server, args.listen))
    elif args.kind == "native":
        import pygrpc_native

        _serve_sync(pygrpc_native.server(futures.ThreadPoolExecutor(POOL_THREADS)), args.listen)
    elif args.kind == "native-aio":
        import pygrpc_native.aio

        asyncio.run(_serve_async(pygrpc_native.aio.server, args.listen))
    else:
        _serve_front(args.listen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
