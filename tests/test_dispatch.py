"""What a handler sees and what it may answer, through the C dispatch:
GrpcRequest fields, the payload's read-only zero-copy view and its release,
metadata, deadline and peer; GrpcResponse forms (bytes-like, protobuf,
metadata and trailers); the thread each kind of handler runs on; CallResult."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any

import pytest
from google.protobuf import wrappers_pb2

from pygrpc_ffi import GrpcRequest, GrpcResponse, GrpcService, Metadata, StatusCode, live_objects

pytestmark = pytest.mark.timeout(20, method="thread")


def capture(service: GrpcService, result: Any = b"") -> list[dict[str, Any]]:
    """Registers pkg.Svc with a handler that records what it saw."""
    seen: list[dict[str, Any]] = []

    def handler(request: GrpcRequest) -> Any:
        seen.append({
            "service": request.service_name,
            "method": request.method_name,
            "full_method": request.full_method,
            "payload": bytes(request.payload),
            "payload_type": type(request.payload),
            "view_type": type(request.payload_view),
            "readonly": request.payload_view.readonly,
            "metadata": request.metadata.pairs(),
            "deadline": request.deadline,
            "time_remaining": request.time_remaining(),
            "peer": request.peer,
            "thread": threading.get_ident(),
        })
        return result

    service.register_handler("pkg.Svc", handler)
    return seen


# ----------------------------------------------------------------------- request


def test_request_names_payload_and_peer(service: GrpcService) -> None:
    seen = capture(service)
    assert service.call("pkg.Svc", "DoThing", b"\x00hello\xff").code is StatusCode.OK
    (req,) = seen
    assert req["service"] == "pkg.Svc"
    assert req["method"] == "DoThing"
    assert req["full_method"] == "/pkg.Svc/DoThing"
    assert req["payload"] == b"\x00hello\xff"
    assert req["payload_type"] is bytes
    assert req["view_type"] is memoryview
    assert req["readonly"] is True
    assert req["peer"] == "local"


def test_request_payload_is_a_view_of_the_callers_bytes_not_a_copy(service: GrpcService) -> None:
    source = bytearray(b"original")
    observed: list[bytes] = []

    def handler(request: GrpcRequest) -> bytes:
        # The caller's buffer changes under the view: no copy was made.
        source[0:1] = b"O"
        observed.append(bytes(request.payload))
        return b""

    service.register_handler("pkg.Svc", handler)
    service.call("pkg.Svc", "M", source)
    assert observed == [b"Original"]


def test_request_payload_and_its_view_cannot_be_written(service: GrpcService) -> None:
    errors: list[BaseException] = []

    def handler(request: GrpcRequest) -> bytes:
        for payload in (request.payload, request.payload_view):
            try:
                payload[0] = 0  # type: ignore[index]
            except TypeError as exc:
                errors.append(exc)
        return b""

    service.register_handler("pkg.Svc", handler)
    assert service.call("pkg.Svc", "M", b"abc").code is StatusCode.OK
    assert len(errors) == 2


def test_empty_payload_is_empty_bytes_and_an_empty_view(service: GrpcService) -> None:
    seen = capture(service)
    service.call("pkg.Svc", "M", b"")
    assert seen[0]["payload"] == b""
    assert seen[0]["payload_type"] is bytes
    assert seen[0]["view_type"] is memoryview


def test_protobuf_request_payload_is_serialized_by_call(service: GrpcService) -> None:
    seen = capture(service)
    message = wrappers_pb2.StringValue(value="proto in")
    service.call("pkg.Svc", "M", message)
    assert wrappers_pb2.StringValue.FromString(seen[0]["payload"]).value == "proto in"


def test_request_kept_past_the_call_still_reads_its_own_bytes_and_fields(
    service: GrpcService,
) -> None:
    kept: list[GrpcRequest] = []

    def handler(request: GrpcRequest) -> bytes:
        kept.append(request)
        return b"ok"

    service.register_handler("pkg.Svc", handler)
    assert service.call("pkg.Svc", "M", b"secret", metadata={"x-k": "v"}).code is StatusCode.OK
    assert service.call("pkg.Svc", "M", b"other!").code is StatusCode.OK
    assert bytes(kept[0].payload) == b"secret"
    assert kept[0].payload[0] == ord("s")
    assert kept[0].metadata["x-k"] == "v"
    assert (kept[0].service_name, kept[0].method_name) == ("pkg.Svc", "M")
    assert bytes(kept[1].payload) == b"other!"
    assert live_objects()["messages"] == 2  # each kept view holds its message
    kept.clear()
    gc.collect()
    assert live_objects()["messages"] == 0


def test_async_handler_payload_kept_past_the_call_reads_its_own_bytes(
    service: GrpcService,
) -> None:
    kept: list[memoryview] = []

    async def handler(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        kept.append(request.payload_view)
        return bytes(request.payload)

    service.register_handler("pkg.Svc", handler)
    result = service.call("pkg.Svc", "M", b"async secret")
    assert result.payload == b"async secret"
    assert bytes(kept[0]) == b"async secret"
    kept.clear()


def test_request_metadata_is_multi_valued_and_typed(service: GrpcService) -> None:
    seen: list[Metadata] = []
    firsts: list[Any] = []

    def handler(request: GrpcRequest) -> bytes:
        seen.append(request.metadata)
        firsts.append((request.get_metadata("x-tag"), request.get_metadata("X-TAG"),
                       request.get_metadata("blob-bin"), request.get_metadata("absent")))
        return b""

    service.register_handler("pkg.Svc", handler)
    service.call("pkg.Svc", "M", b"", [
        ("x-tag", "one"), ("blob-bin", b"\x00\x01\xff"), ("x-tag", "two"), ("other", "o"),
    ])
    (md,) = seen
    assert md.pairs() == (("x-tag", "one"), ("blob-bin", b"\x00\x01\xff"), ("x-tag", "two"),
                          ("other", "o"))
    assert md.get_all("x-tag") == ["one", "two"]
    assert md["x-tag"] == "one"
    assert isinstance(md["blob-bin"], bytes)
    assert isinstance(md["other"], str)
    assert "other" in md and "absent" not in md
    assert len(md) == 3
    assert firsts == [("one", "one", b"\x00\x01\xff", None)]


def test_request_metadata_accepts_a_mapping(service: GrpcService) -> None:
    seen = capture(service)
    service.call("pkg.Svc", "M", b"", {"a": "1", "b-bin": b"\x02"})
    assert seen[0]["metadata"] == (("a", "1"), ("b-bin", b"\x02"))


def test_request_header_names_http2_forbids_can_be_looked_up(service: GrpcService) -> None:
    """A host passes on what the transport delivered, upper case included."""
    from pygrpc_ffi.testing import TestClient

    seen: list[Any] = []
    service.register_method("pkg.Svc", "M", lambda request: seen.append(request.metadata) or b"")
    TestClient(service).call_raw("/pkg.Svc/M", b"", metadata=[
        ("X-Upper", "1"), (":foo", "2"), ("x-upper", "3"), ("raw-bin", b"\x00")])
    md = seen[0]
    assert md.pairs() == (("X-Upper", "1"), (":foo", "2"), ("x-upper", "3"),
                          ("raw-bin", b"\x00"))
    assert md["X-Upper"] == md["x-upper"] == md.get("X-UPPER") == "1"
    assert md.get_all("X-Upper") == ["1", "3"]
    assert "X-Upper" in md and md[":foo"] == "2" and md.get(":FOO") == "2"
    assert md["raw-bin"] == b"\x00"
    assert list(md) == ["x-upper", ":foo", "raw-bin"]


@pytest.mark.parametrize("value", [5, 30_000_000, 1.5, None, ["a"]])
def test_request_metadata_value_of_a_wrong_type_raises_type_error(
    service: GrpcService, value: Any
) -> None:
    from pygrpc_ffi.testing import TestClient

    seen = capture(service)
    with pytest.raises(TypeError, match="x-n"):
        service.call("pkg.Svc", "M", b"", {"x-n": value})
    with pytest.raises(TypeError, match="x-n"):
        TestClient(service).call_raw("/pkg.Svc/M", b"", metadata={"x-n": value})
    with pytest.raises(TypeError):
        service.call("pkg.Svc", "M", b"", [(5, "v")])
    assert seen == []  # nothing was sent, not even b"\0" * 5


def test_no_timeout_means_no_deadline(service: GrpcService) -> None:
    seen = capture(service)
    service.call("pkg.Svc", "M")
    assert seen[0]["deadline"] is None
    assert seen[0]["time_remaining"] is None


def test_timeout_sets_the_deadline_the_handler_sees(service: GrpcService) -> None:
    seen = capture(service)
    before = time.time()
    assert service.call("pkg.Svc", "M", timeout=5.0).code is StatusCode.OK
    req = seen[0]
    assert before + 4.5 < req["deadline"] < time.time() + 5.5
    assert 4.0 < req["time_remaining"] <= 5.0


def test_time_remaining_is_never_negative() -> None:
    request = GrpcRequest("pkg.Svc", "M", deadline=time.time() - 10)
    assert request.time_remaining() == 0.0


# ---------------------------------------------------------------------- response


@pytest.mark.parametrize(
    "answer",
    [b"bytes", bytearray(b"bytes"), memoryview(b"xbytesx")[1:-1]],
    ids=["bytes", "bytearray", "memoryview"],
)
def test_bytes_like_return_value_is_the_response_payload(
    service: GrpcService, answer: Any
) -> None:
    service.register_handler("pkg.Svc", lambda request: answer)
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.OK
    assert result.payload == b"bytes"
    assert live_objects()["buffers"] == 0


def test_empty_response_payload(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", lambda request: GrpcResponse())
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.OK
    assert result.payload == b""
    assert result.initial_metadata.pairs() == ()
    assert result.trailing_metadata.pairs() == ()


def test_protobuf_message_is_serialized(service: GrpcService) -> None:
    service.register_method("pkg.Svc", "Bare", lambda r: wrappers_pb2.Int64Value(value=42))
    service.register_method(
        "pkg.Svc", "Wrapped", lambda r: GrpcResponse(wrappers_pb2.BytesValue(value=b"\x00b"))
    )
    bare = service.call("pkg.Svc", "Bare")
    wrapped = service.call("pkg.Svc", "Wrapped")
    assert wrappers_pb2.Int64Value.FromString(bare.payload).value == 42
    assert wrappers_pb2.BytesValue.FromString(wrapped.payload).value == b"\x00b"


def test_response_metadata_and_trailers_reach_the_caller(service: GrpcService) -> None:
    def handler(request: GrpcRequest) -> GrpcResponse:
        return GrpcResponse(
            b"body",
            metadata=[("initial", "i1"), ("initial", "i2"), ("raw-bin", b"\x00\xfe")],
            trailers={"trailer": "t", "trailer-bin": b"\xff"},
        )

    service.register_handler("pkg.Svc", handler)
    result = service.call("pkg.Svc", "M")
    assert result.code is StatusCode.OK
    assert result.payload == b"body"
    assert result.initial_metadata.pairs() == (("initial", "i1"), ("initial", "i2"),
                                               ("raw-bin", b"\x00\xfe"))
    assert result.trailing_metadata.pairs() == (("trailer", "t"), ("trailer-bin", b"\xff"))


def test_large_payload_round_trips(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", lambda request: bytes(request.payload)[::-1])
    payload = bytes(range(256)) * 8192  # 2 MiB
    result = service.call("pkg.Svc", "M", payload)
    assert result.payload == payload[::-1]


def test_call_result_ok_and_to_response(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", lambda request: GrpcResponse(b"p", {"m": "v"}, {"t": "w"}))
    result = service.call("pkg.Svc", "M")
    assert result.ok
    response = result.to_response()
    assert response.payload == b"p"
    assert response.metadata["m"] == "v"
    assert response.trailers["t"] == "w"
    assert not service.call("pkg.Nope", "M").ok


def test_response_buffer_is_released_after_the_call(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", lambda request: bytes(64))
    for _ in range(10):
        assert service.call("pkg.Svc", "M").payload == bytes(64)
    assert live_objects()["calls"] == 0
    assert live_objects()["buffers"] == 0


def test_response_object_is_kept_until_its_buffer_is_released(service: GrpcService) -> None:
    class Payload(bytearray):
        pass

    refs: list[weakref.ref[Payload]] = []

    def handler(request: GrpcRequest) -> Payload:
        payload = Payload(b"zero copy")
        refs.append(weakref.ref(payload))
        return payload

    service.register_handler("pkg.Svc", handler)
    result = service.call("pkg.Svc", "M")
    assert result.payload == b"zero copy"
    # The call is freed once call() returns: the host released the buffer,
    # and with it the handler's own object.
    assert live_objects()["buffers"] == 0
    gc.collect()
    assert refs[0]() is None


# ----------------------------------------------------------------------- threads


def test_sync_handler_runs_on_the_dispatching_thread(service: GrpcService) -> None:
    seen = capture(service)
    service.call("pkg.Svc", "M")
    assert seen[0]["thread"] == threading.get_ident()

    results: list[int] = []

    def worker() -> None:
        service.call("pkg.Svc", "M")
        results.append(threading.get_ident())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert seen[1]["thread"] == results[0]


def test_async_handler_runs_on_the_package_event_loop_thread(service: GrpcService) -> None:
    threads: list[threading.Thread] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def handler(request: GrpcRequest) -> bytes:
        threads.append(threading.current_thread())
        loops.append(asyncio.get_running_loop())
        return b""

    service.register_handler("pkg.Svc", handler)
    service.call("pkg.Svc", "M")
    service.call("pkg.Svc", "M")
    assert threads[0] is not threading.current_thread()
    assert threads[0].name == "pygrpc_ffi-asyncio"
    assert threads[0] is threads[1]
    assert loops[0] is loops[1]


def test_async_handler_can_await_real_work(service: GrpcService) -> None:
    async def handler(request: GrpcRequest) -> GrpcResponse:
        await asyncio.sleep(0.01)
        return GrpcResponse(bytes(request.payload) * 2, trailers={"slept": "yes"})

    service.register_handler("pkg.Svc", handler)
    result = service.call("pkg.Svc", "M", b"ab")
    assert result.payload == b"abab"
    assert result.trailing_metadata["slept"] == "yes"


def test_acall_from_an_event_loop(service: GrpcService) -> None:
    async def slow(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0.01)
        return b"async " + bytes(request.payload)

    service.register_method("pkg.Svc", "Async", slow)
    service.register_method("pkg.Svc", "Sync", lambda r: b"sync " + bytes(r.payload))

    async def main() -> list[Any]:
        return await asyncio.gather(
            service.acall("pkg.Svc", "Async", b"a"),
            service.acall("pkg.Svc", "Sync", b"b"),
            service.acall("pkg.Svc", "Missing"),
        )

    a, b, missing = asyncio.run(main())
    assert (a.code, a.payload) == (StatusCode.OK, b"async a")
    assert (b.code, b.payload) == (StatusCode.OK, b"sync b")
    assert missing.code is StatusCode.UNIMPLEMENTED


def test_invalid_request_metadata_key_is_refused_by_call(service: GrpcService) -> None:
    service.register_handler("pkg.Svc", lambda r: b"")
    with pytest.raises(ValueError):
        service.call("pkg.Svc", "M", b"", [("", "empty key")])
    with pytest.raises(ValueError):
        service.call("", "M")
    assert live_objects()["calls"] == 0


def test_request_metadata_is_a_mutable_multi_valued_mapping(service: GrpcService) -> None:
    seen: list[Any] = []

    def handler(request: GrpcRequest) -> bytes:
        md = request.metadata
        md["x-added"] = "1"
        md["X-Multi"] = "replaced"
        md.add("x-multi", "again")
        del md["x-gone"]
        seen.append(md.pairs())
        return b""

    service.register_handler("pkg.Svc", handler)
    service.call("pkg.Svc", "M", metadata=[("x-multi", "a"), ("x-gone", "b"), ("x-multi", "c")])
    assert seen == [(("x-multi", "replaced"), ("x-added", "1"), ("x-multi", "again"))]
    built = GrpcRequest("pkg.Svc", "M", b"")
    built.metadata["k"] = "v"
    assert built.metadata["K"] == "v"
    with pytest.raises(TypeError):
        built.metadata["k"] = 5  # type: ignore[assignment]
