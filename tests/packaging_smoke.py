"""Smoke test of an installed pygrpc_ffi (run in a fresh venv by
tests/test_packaging.py and noxfile.py, never from the source tree):

    python tests/packaging_smoke.py SOURCE_ROOT [--no-grpc]

Imports the package, checks that it is the installed one and that its
versions agree, registers handlers and calls them through the C path, unary
and streaming.  With --no-grpc, also checks that grpcio is absent (the core
needs only cffi)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import pathlib
import sys
from collections.abc import AsyncIterator, Iterator


def main(argv: list[str]) -> int:
    source_root = pathlib.Path(argv[0]).resolve()
    sys.path[:] = [p for p in sys.path if p and pathlib.Path(p).resolve() != source_root]

    from pygrpc_ffi._native import lib

    import pygrpc_ffi as pgf

    where = pathlib.Path(pgf.__file__).resolve()
    assert where.parent != source_root / "pygrpc_ffi", f"imported from the source tree: {where}"
    assert pathlib.Path(sys.prefix).resolve() in where.parents, (where, sys.prefix)
    if "--no-grpc" in argv:
        assert importlib.util.find_spec("grpc") is None, "grpcio is installed"
        assert importlib.util.find_spec("google") is None, "protobuf is installed"

    version = importlib.metadata.version("pygrpc_ffi")
    number = lib.pgf_version_number()
    from_library = f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    assert pgf.__version__ == version == from_library, (pgf.__version__, version, number)
    assert pgf.ABI_VERSION == lib.pgf_abi_version() == lib.PGF_ABI_VERSION
    assert (pathlib.Path(pgf.get_include()) / "pygrpc_ffi.h").is_file()
    assert (pathlib.Path(pgf.get_library_dir()) / "libpygrpc_ffi.so").is_file()
    assert (where.parent / "py.typed").is_file()

    service = pgf.GrpcService()

    @service.method("smoke.Svc", "Hello")
    def hello(request: pgf.GrpcRequest) -> pgf.GrpcResponse:
        return pgf.GrpcResponse(b"hello " + bytes(request.payload), metadata={"x-k": "v"})

    @service.method("smoke.Svc", "Later")
    async def later(request: pgf.GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        return request.payload

    @service.method("smoke.Svc", "Fail")
    def fail(request: pgf.GrpcRequest) -> bytes:
        raise pgf.NotFound("nothing here")

    @service.method("smoke.Svc", "Count", response_streaming=True)
    def count(request: pgf.GrpcRequest) -> Iterator[bytes]:
        for i in range(int(bytes(request.payload))):
            yield str(i).encode()

    @service.method("smoke.Svc", "Echo", request_streaming=True, response_streaming=True)
    async def echo(requests: AsyncIterator[pgf.GrpcRequest]) -> AsyncIterator[bytes]:
        async for r in requests:
            yield r.payload.upper()

    result = service.call("smoke.Svc", "Hello", b"wheel", timeout=5)
    assert result.ok and result.payload == b"hello wheel", result
    assert result.initial_metadata.get("x-k") == "v", result
    assert service.call("smoke.Svc", "Later", b"async", timeout=5).payload == b"async"
    failed = service.call("smoke.Svc", "Fail", timeout=5)
    assert failed.code == pgf.StatusCode.NOT_FOUND and failed.message == "nothing here"
    assert service.call_stream("smoke.Svc", "Count", [b"3"], timeout=5).messages == (
        b"0", b"1", b"2")
    streamed = service.call_stream("smoke.Svc", "Echo", [b"a", b"b", b"c"], timeout=5)
    assert streamed.ok and streamed.messages == (b"A", b"B", b"C"), streamed
    unknown = service.call("smoke.Nope", "X", timeout=5)
    assert unknown.code == pgf.StatusCode.UNIMPLEMENTED
    print(f"smoke ok: pygrpc_ffi {pgf.__version__} (ABI {pgf.ABI_VERSION}) from {where.parent},"
          f" Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
