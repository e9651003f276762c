"""Fuzzing the Python layer with hypothesis: metadata conversions, status and
error mapping, response building and streams, with arbitrary (also wrong)
types.

Whatever the input: a conversion either gives what gRPC core accepts or
raises TypeError/ValueError; every call through the C path ends with a
status; the process survives; and the C live counters return to where they
were after every example.  The libFuzzer harnesses in tests/fuzz do the same
for the C shim.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pygrpc_ffi._native import lib

from pygrpc_ffi import (
    GrpcError,
    GrpcRequest,
    GrpcResponse,
    GrpcService,
    StatusCode,
    live_objects,
)
from pygrpc_ffi.errors import status_for_exception
from pygrpc_ffi.metadata import encode_entry, is_binary_key
from pygrpc_ffi.testing import strategies as gs

pytestmark = pytest.mark.timeout(120, method="thread")

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET = "fuzz-secret-text"

# ------------------------------------------------------- gRPC core's rules

KEY_CHARS = set(b"0123456789abcdefghijklmnopqrstuvwxyz_.-")
RESERVED = {key.encode() for key in gs.FORBIDDEN_KEYS}


def core_binary(key: bytes) -> bool:
    """gRPC core: a key is binary if it has 5+ bytes and ends in -bin."""
    return len(key) >= 5 and key.endswith(b"-bin")


def core_accepts(key: bytes, value: bytes) -> bool:
    """What gRPC core accepts from a server (grpc C++ aborts on the rest)."""
    if not key or not set(key) <= KEY_CHARS:
        return False
    if key == b"grpc-retry-pushback-ms":  # parsed as milliseconds, sent as parsed
        return value.isdigit() and len(value) <= 18
    return core_binary(key) or all(0x20 <= c <= 0x7E for c in value)


def shim_accepts(key: bytes, value: bytes) -> bool:
    """gRPC core's rules narrowed by the shim's documented extras."""
    if not core_accepts(key, value) or key in RESERVED:
        return False
    return core_binary(key) or not (value[:1] == b" " or value[-1:] == b" ")


def entry_valid(key: object, value: object) -> bool:
    """Whether a handler's (key, value) should reach the host."""
    if not isinstance(key, str) or not key.isascii():
        return False
    k = key.encode()
    if core_binary(k):
        return isinstance(value, (bytes, bytearray, memoryview)) and shim_accepts(k, bytes(value))
    return (isinstance(value, str) and value.isascii()
            and shim_accepts(k, value.encode()))


# -------------------------------------------------------------- strategies

def _view(data: bytes) -> memoryview:
    return memoryview(data)


key_text = st.text(alphabet="ab-_.Z0 \x00é/:", max_size=8)
keys = st.one_of(
    key_text,
    st.sampled_from(["-bin", "a-bin", "x-bin", "-BIN", "grpc-x", "grpc-status-details-bin",
                     "grpc-retry-pushback-ms", "grpc-status", "te", "connection", "x-n", "bin",
                     ""]),
    st.builds(lambda k: k + "-bin", key_text),
    st.integers(), st.none(), st.binary(max_size=6),
)
values = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=0x17F), max_size=12),
    st.sampled_from([" lead", "trail ", "ok", "", "\x7f", "\t"]),
    st.binary(max_size=12),
    st.builds(bytearray, st.binary(max_size=8)),
    st.binary(max_size=8).map(_view),
    st.integers(), st.floats(allow_nan=False), st.none(), st.lists(st.integers(), max_size=2),
)
entries = st.tuples(keys, values)


def _instantiable(cls: type[BaseException]) -> bool:
    try:
        cls(SECRET)
    except Exception:
        return False
    return True


EXCEPTION_TYPES = sorted(
    (c for c in vars(builtins).values()
     if isinstance(c, type) and issubclass(c, BaseException)
     and c not in (GeneratorExit,) and _instantiable(c)),
    key=lambda c: c.__name__,
)
codes = st.one_of(st.sampled_from(list(StatusCode)), st.integers(-3, 20), st.none(),
                  st.text(max_size=3), st.floats(allow_nan=False))


def exceptions() -> st.SearchStrategy[BaseException]:
    return st.one_of(
        st.builds(lambda c: c(SECRET), st.sampled_from(EXCEPTION_TYPES)),
        st.builds(lambda c: GrpcError(c, SECRET), st.sampled_from(list(StatusCode))),
    )


# ----------------------------------------------------------------- helpers


def settle(before: dict[str, int], timeout: float = 3.0) -> dict[str, int]:
    """The live counters once they are back to ``before`` (or time is out)."""
    deadline = time.monotonic() + timeout
    now = live_objects()
    while now != before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.002)
        now = live_objects()
    return now


@contextlib.contextmanager
def quiet_handler_logs() -> Iterator[None]:
    """The package logs each failing handler's traceback; pytest's capture
    handlers (added to the package's logger while a test runs) would keep
    those records, and their frames keep requests alive past the example
    that checks the counters.  Drop them while it runs."""
    logger = logging.getLogger("pygrpc_ffi")
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers = [logging.NullHandler()]
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = handlers, propagate


@pytest.fixture(scope="module")
def svc() -> Iterator[GrpcService]:
    service = GrpcService()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture(autouse=True)
def no_leaked_c_objects() -> Iterator[None]:
    # Overrides conftest's check: the module's service stays registered
    # across tests; every example below checks the counters itself.
    yield


# ------------------------------------------------------ metadata conversion


@FUZZ
@given(entries)
@example(("-bin", b"\x80"))
@example(("a-bin", b"\x00\xff"))
@example(("x-n", 5))
@example(("x-a", "trail "))
def test_encode_entry_gives_what_grpc_core_accepts(entry: tuple[Any, Any]) -> None:
    key, value = entry
    if isinstance(key, str):
        assert is_binary_key(key) == core_binary(key.encode("utf-8", "replace"))
    try:
        k, v = encode_entry(key, value)
    except (TypeError, ValueError):
        assert not entry_valid(key, value)
        return
    assert isinstance(k, bytes) and isinstance(v, bytes)
    rc = lib.pgf_metadata_validate(k, len(k), v, len(v))
    assert (rc == lib.PGF_OK) == shim_accepts(k, v)
    if rc == lib.PGF_OK:
        assert core_accepts(k, v)
        assert entry_valid(key, value)


# ------------------------------------------------------- status and errors


@FUZZ
@given(exceptions())
def test_every_exception_maps_to_a_status(exc: BaseException) -> None:
    code = status_for_exception(exc)
    assert isinstance(code, StatusCode) and code is not StatusCode.OK


@FUZZ
@given(codes, st.text(max_size=20))
def test_grpc_error_with_any_code(code: Any, message: str) -> None:
    try:
        err = GrpcError(code, message)
    except (TypeError, ValueError):
        return  # refused at construction: a handler raising it fails its call
    assert isinstance(err.code, StatusCode) and err.code is not StatusCode.OK
    assert isinstance(err, GrpcError)


@FUZZ
@given(exc=st.one_of(exceptions(), codes), use_async=st.booleans())
def test_a_raising_handler_ends_its_call_with_a_status(
        svc: GrpcService, exc: Any, use_async: bool) -> None:
    # The handler raises a fresh exception each time (a raised one keeps the
    # handler's frames, and the request in them, in its traceback); for a
    # code, GrpcError(code) itself, which may refuse the code.
    def make() -> BaseException:
        return copy.copy(exc) if isinstance(exc, BaseException) else GrpcError(exc, SECRET)

    def raising(request: GrpcRequest) -> bytes:
        raise make()

    async def araising(request: GrpcRequest) -> bytes:
        raise make()

    before = live_objects()
    svc.register_method("fuzz.Err", "Raise", araising if use_async else raising)
    with quiet_handler_logs():
        try:
            result = svc.call("fuzz.Err", "Raise", b"x", timeout=10.0)
        finally:
            svc.unregister_method("fuzz.Err", "Raise")
    assert isinstance(result.code, StatusCode) and result.code is not StatusCode.OK
    if result.code is StatusCode.INTERNAL and isinstance(exc, BaseException) \
            and not isinstance(exc, GrpcError):
        assert SECRET not in result.message  # never the exception's text
    assert settle(before) == before


# ------------------------------------------------------- response building

payload_values = st.one_of(
    st.binary(max_size=64), st.builds(bytearray, st.binary(max_size=16)),
    st.binary(max_size=16).map(_view), st.text(max_size=8), st.integers(),
    st.none(), st.floats(allow_nan=False), st.lists(st.binary(max_size=4), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.just(object()),
)
metadata_values = st.one_of(
    st.none(), st.lists(entries, max_size=3),
    st.dictionaries(st.text(alphabet="abx-", max_size=6), values, max_size=2),
    st.integers(), st.text(max_size=3),
)
answers = st.one_of(
    payload_values,
    st.builds(GrpcResponse, payload_values, metadata_values, metadata_values),
)


def is_bytes_like(obj: object) -> bool:
    return isinstance(obj, (bytes, bytearray, memoryview))


def metadata_ok(md: object) -> bool | None:
    """True/False if every entry is valid or one is not; None if unknown."""
    if md is None:
        return True
    if isinstance(md, dict):
        md = list(md.items())
    if not isinstance(md, list):
        return None
    return all(entry_valid(k, v) for k, v in md)


@FUZZ
@given(answer=answers, use_async=st.booleans())
@example(answer=GrpcResponse(b"p", [("-bin", b"\x80")]), use_async=False)
@example(answer=GrpcResponse(b"p", trailers=[("x-n", 5)]),  # type: ignore[list-item]
         use_async=True)
def test_any_answer_ends_with_a_status(svc: GrpcService, answer: Any, use_async: bool) -> None:
    def handler(request: GrpcRequest) -> Any:
        return answer

    async def ahandler(request: GrpcRequest) -> Any:
        await asyncio.sleep(0)
        return answer

    before = live_objects()
    svc.register_method("fuzz.Answer", "Any", ahandler if use_async else handler)
    with quiet_handler_logs():
        try:
            result = svc.call("fuzz.Answer", "Any", b"", timeout=10.0)
        finally:
            svc.unregister_method("fuzz.Answer", "Any")
    assert isinstance(result.code, StatusCode)
    response = answer if isinstance(answer, GrpcResponse) else GrpcResponse(answer)
    md_ok = [metadata_ok(response.metadata), metadata_ok(response.trailers)]
    if False in md_ok:
        assert result.code is not StatusCode.OK  # an invalid entry never reaches a host
    elif is_bytes_like(response.payload) and md_ok == [True, True]:
        assert result.code is StatusCode.OK, result
        assert result.payload == bytes(response.payload)
    assert settle(before) == before


# ------------------------------------------------------------------ streams

# A handler's script: ("read",) takes the next request, ("yield", x) answers
# x, ("raise", e) raises e.
steps = st.one_of(
    st.just(("read", None)),
    st.tuples(st.just("yield"), st.one_of(st.binary(max_size=16), payload_values,
                                          st.builds(GrpcResponse, st.binary(max_size=8),
                                                    metadata_values, metadata_values))),
    st.tuples(st.just("raise"), exceptions()),
)
scripts = st.lists(steps, max_size=6)
requests = st.lists(st.binary(max_size=32), max_size=4)


def script_valid(script: list[tuple[str, Any]]) -> bool:
    """No raise, and every answer a plain bytes-like object."""
    return all(op == "read" or (op == "yield" and is_bytes_like(x)) for op, x in script)


def run_sync(script: list[tuple[str, Any]], it: Iterator[GrpcRequest]) -> Iterator[Any]:
    for op, arg in script:
        if op == "read":
            next(it, None)
        elif op == "yield":
            yield arg
        else:
            raise copy.copy(arg)  # fresh: see test_a_raising_handler_...


async def run_async(script: list[tuple[str, Any]],
                    it: AsyncIterator[GrpcRequest]) -> AsyncIterator[Any]:
    for op, arg in script:
        if op == "read":
            try:
                await it.__anext__()
            except StopAsyncIteration:
                pass
        elif op == "yield":
            yield arg
        else:
            raise copy.copy(arg)  # fresh: see test_a_raising_handler_...


def make_handler(script: list[tuple[str, Any]], req_stream: bool, resp_stream: bool,
                 use_async: bool) -> Any:
    """A handler of the given kind that plays ``script``."""
    if use_async:
        async def aiter_of(x: Any) -> AsyncIterator[Any]:
            if req_stream:
                async for r in x:
                    yield r
            else:
                yield x

        if resp_stream:
            async def agen(x: Any) -> AsyncIterator[Any]:
                async for answer in run_async(script, aiter_of(x)):
                    yield answer
            return agen

        async def aunary(x: Any) -> Any:
            answers = [a async for a in run_async(script, aiter_of(x))]
            return answers[-1] if answers else b""
        return aunary

    def iter_of(x: Any) -> Iterator[Any]:
        return iter(x) if req_stream else iter([x])

    if resp_stream:
        def gen(x: Any) -> Iterator[Any]:
            yield from run_sync(script, iter_of(x))
        return gen

    def unary(x: Any) -> Any:
        answers = list(run_sync(script, iter_of(x)))
        return answers[-1] if answers else b""
    return unary


@settings(FUZZ, max_examples=250)
@given(script=scripts, reqs=requests, req_stream=st.booleans(), resp_stream=st.booleans(),
       use_async=st.booleans())
def test_any_stream_ends_with_a_status(svc: GrpcService, script: list[tuple[str, Any]],
                                       reqs: list[bytes], req_stream: bool,
                                       resp_stream: bool, use_async: bool) -> None:
    before = live_objects()
    svc.register_method("fuzz.Stream", "Any",
                        make_handler(script, req_stream, resp_stream, use_async),
                        request_streaming=req_stream, response_streaming=resp_stream)
    with quiet_handler_logs():
        try:
            result = svc.call_stream("fuzz.Stream", "Any", reqs, timeout=10.0)
        finally:
            svc.unregister_method("fuzz.Stream", "Any")
    assert isinstance(result.code, StatusCode)
    if not req_stream and len(reqs) != 1:
        assert result.code is StatusCode.UNIMPLEMENTED
    elif script_valid(script):
        assert result.code is StatusCode.OK, result
        answers = [bytes(x) for op, x in script if op == "yield"]
        if resp_stream:
            assert list(result.messages) == answers
        else:
            assert result.payload == (answers[-1] if answers else b"")
    elif any(op == "raise" for op, _ in script):
        first_raise = next(i for i, (op, _) in enumerate(script) if op == "raise")
        if script_valid(script[:first_raise]):
            assert result.code is not StatusCode.OK
    assert settle(before) == before
