"""A grpcio client for the example handlers: ``python examples/demo_client.py ADDR``."""

from __future__ import annotations

import json
import sys

import grpc


def main(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        def call(method: str, payload: bytes, **kwargs: object) -> None:
            stub = channel.unary_unary(method)
            try:
                answer, rpc = stub.with_call(payload, timeout=10, **kwargs)
                initial = dict(rpc.initial_metadata())
                trailing = dict(rpc.trailing_metadata())
                served_by = initial.get("x-served-by", "-")
                print(f"{method:32} OK       {answer!r}  (x-served-by={served_by}, "
                      f"trailers={ {k: v for k, v in trailing.items() if k.startswith('x-')} })")
            except grpc.RpcError as err:
                print(f"{method:32} {err.code().name:8} {err.details()!r}")

        call("/demo.Greeter/SayHello", b"gRPC client")
        call("/demo.Greeter/SayHelloLater", b"async world")
        call("/demo.Calculator/Divide", json.dumps({"a": 1, "b": 4}).encode())
        call("/demo.Calculator/Divide", json.dumps({"a": 1, "b": 0}).encode())
        call("/demo.Echo/Anything", b"\x00\x01binary", metadata=[("x-echo-note", "kept")])
        countdown = channel.unary_stream("/demo.Greeter/Countdown")(b"3", timeout=10)
        print(f"{'/demo.Greeter/Countdown':32} stream   {list(countdown)!r}")
        chat = channel.stream_stream("/demo.Greeter/Chat")(iter([b"hi", b"bye"]), timeout=10)
        print(f"{'/demo.Greeter/Chat':32} stream   {list(chat)!r}")
        call("/demo.Greeter/NoSuchMethod", b"")
        call("/no.Such/Service", b"")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"))
