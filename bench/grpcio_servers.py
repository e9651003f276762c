"""grpcio baselines for the end-to-end benchmark: the same echo as
bench/handlers.py, served by grpcio's sync server or by grpc.aio.

    python -m bench.grpcio_servers {sync,aio} [--listen ADDR] [--workers N]

Prints ``listening on ADDR`` once it serves, like the C++ host; SIGTERM
stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent import futures

import grpc
from grpc import aio

# The same path as bench/handlers.py (not imported: it would load pygrpc_ffi).
SERVICE, METHOD = "bench.Echo", "Echo"


def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    """The echo, written for grpcio: raw bytes in and out (no serializers)."""
    return request


async def async_echo(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


MESSAGE = b"0123456789abcdef"


def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    """The streams of bench/handlers.py, written for grpcio."""
    yield from requests


def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for _ in range(int(request)):
        yield MESSAGE


async def async_bidi(requests: AsyncIterator[bytes],
                     context: aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def async_server_stream(request: bytes,
                              context: aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
    for _ in range(int(request)):
        yield MESSAGE


def _generic(handler: object, bidi_fn: object, server_fn: object) -> list[grpc.GenericRpcHandler]:
    rpc = grpc.unary_unary_rpc_method_handler(handler)  # type: ignore[arg-type]
    streams = {
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi_fn),  # type: ignore[arg-type]
        "Server": grpc.unary_stream_rpc_method_handler(server_fn),  # type: ignore[arg-type]
    }
    return [grpc.method_handlers_generic_handler(SERVICE, {METHOD: rpc}),
            grpc.method_handlers_generic_handler("bench.Stream", streams)]


def serve_sync(listen: str, workers: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers(_generic(echo, bidi, server_stream))
    port = server.add_insecure_port(listen)
    server.start()
    print(f"listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


async def serve_aio(listen: str) -> None:
    server = aio.server()
    server.add_generic_rpc_handlers(_generic(async_echo, async_bidi, async_server_stream))
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("sync", "aio"))
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    if args.kind == "sync":
        serve_sync(args.listen, args.workers)
    else:
        asyncio.run(serve_aio(args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
