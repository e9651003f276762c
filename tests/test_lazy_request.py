"""Lazy request fields: a dispatched GrpcRequest reads its names, deadline
and peer from the call on first use; a request that outlives its call (kept
by the handler in any way) still has every field afterwards."""

from __future__ import annotations

import threading
from typing import Any

from pygrpc_ffi import GrpcError, GrpcRequest, GrpcService, StatusCode

TIMEOUT = 30.0


def _fields(request: GrpcRequest) -> tuple[Any, ...]:
    deadline_set = request.deadline is not None
    return (request.service_name, request.method_name, deadline_set, request.peer,
            request.full_method)


EXPECTED = ("pkg.Svc", "Keep", True, "local", "/pkg.Svc/Keep")


def test_fields_read_during_the_call(service: GrpcService) -> None:
    seen: list[tuple[Any, ...]] = []

    def handler(request: GrpcRequest) -> bytes:
        seen.append(_fields(request))
        return b"ok"

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).ok
    assert seen == [EXPECTED]


def test_request_stored_by_the_handler_keeps_its_fields(service: GrpcService) -> None:
    kept: list[GrpcRequest] = []
    service.register_method("pkg.Svc", "Keep", lambda request: kept.append(request) or b"ok")
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).ok
    assert _fields(kept[0]) == EXPECTED
    assert "pkg.Svc" in repr(kept[0])


def test_request_kept_by_a_closure_keeps_its_fields(service: GrpcService) -> None:
    later: list[Any] = []

    def handler(request: GrpcRequest) -> bytes:
        later.append(lambda: _fields(request))
        return b"ok"

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).ok
    assert later[0]() == EXPECTED


def test_request_kept_by_a_thread_keeps_its_fields(service: GrpcService) -> None:
    done = threading.Event()
    start = threading.Event()
    seen: list[tuple[Any, ...]] = []

    def later(request: GrpcRequest) -> None:
        try:
            start.wait(TIMEOUT)
            seen.append(_fields(request))
        finally:
            done.set()

    def handler(request: GrpcRequest) -> bytes:
        threading.Thread(target=later, args=(request,), daemon=True).start()
        return b"ok"

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).ok
    start.set()
    assert done.wait(TIMEOUT)
    assert seen == [EXPECTED]


def test_request_kept_by_a_failing_handler_keeps_its_fields(service: GrpcService) -> None:
    kept: list[GrpcRequest] = []

    def handler(request: GrpcRequest) -> bytes:
        kept.append(request)
        raise GrpcError(StatusCode.NOT_FOUND, "no")

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).code is StatusCode.NOT_FOUND
    assert _fields(kept[0]) == EXPECTED


def test_request_kept_by_an_async_handler_keeps_its_fields(service: GrpcService) -> None:
    kept: list[GrpcRequest] = []

    async def handler(request: GrpcRequest) -> bytes:
        kept.append(request)
        return b"ok"

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).ok
    assert _fields(kept[0]) == EXPECTED


def test_request_in_the_answer_keeps_its_fields(service: GrpcService) -> None:
    class Answer(bytes):
        request: GrpcRequest

    kept: list[Answer] = []

    def handler(request: GrpcRequest) -> Answer:
        answer = Answer(b"ok")
        answer.request = request
        kept.append(answer)
        return answer

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).payload == b"ok"
    assert _fields(kept[0].request) == EXPECTED


def test_service_registration_sees_each_method_name(service: GrpcService) -> None:
    kept: list[GrpcRequest] = []
    service.register_handler("pkg.Svc", lambda request: kept.append(request) or b"ok")
    for method in ("One", "Two", "One"):
        assert service.call("pkg.Svc", method, b"x").ok
    assert [r.method_name for r in kept] == ["One", "Two", "One"]
    assert [r.deadline for r in kept] == [None, None, None]


def test_dispatched_request_fields_can_be_set(service: GrpcService) -> None:
    seen: list[tuple[Any, ...]] = []

    def handler(request: GrpcRequest) -> bytes:
        request.service_name = "other.Svc"
        request.peer = "elsewhere"
        request.deadline = None
        seen.append((request.service_name, request.method_name, request.deadline, request.peer))
        return b"ok"

    service.register_method("pkg.Svc", "Keep", handler)
    assert service.call("pkg.Svc", "Keep", b"x", timeout=TIMEOUT).ok
    assert seen == [("other.Svc", "Keep", None, "elsewhere")]


def test_constructed_request_has_the_given_fields() -> None:
    request = GrpcRequest("a.B", "C", b"x", deadline=12.5, peer="p")
    assert (request.service_name, request.method_name, request.deadline, request.peer) == (
        "a.B", "C", 12.5, "p")
    request.method_name = "D"
    assert request.full_method == "/a.B/D"
