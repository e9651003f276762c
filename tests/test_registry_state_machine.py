"""A hypothesis state machine interleaving service and method registration,
unregistration and dispatch through C, checked against a dict model: which
handler answers each call (method over service, UNIMPLEMENTED for unknown),
has_service, has_method, list_services, get_handler, the live handler count,
and every C counter back to zero at teardown."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pygrpc_ffi import GrpcRequest, GrpcService, StatusCode, live_objects

SERVICES = st.sampled_from(["a.Svc", "b.Svc", "pkg.sub.Other"])
METHODS = st.sampled_from(["Get", "Put", "Delete"])


def wait_for(predicate: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        gc.collect()  # request views in reference cycles hold their messages
        time.sleep(0.001)
    return True


class Tagged:
    """A handler object answering with its tag (sync or async)."""

    def __init__(self, tag: str, asynchronous: bool) -> None:
        self.tag = tag
        self.asynchronous = asynchronous

    def handle_request(self, request: GrpcRequest) -> Any:
        answer = f"{self.tag}:{request.service_name}/{request.method_name}".encode()
        if not self.asynchronous:
            return answer

        async def later() -> bytes:
            await asyncio.sleep(0)
            return answer

        return later()


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.service = GrpcService()
        self.services: dict[str, Tagged] = {}
        self.methods: dict[tuple[str, str], Tagged] = {}
        self.next_tag = 0

    def _handler(self, asynchronous: bool) -> Tagged:
        self.next_tag += 1
        return Tagged(f"h{self.next_tag}", asynchronous)

    # ------------------------------------------------------------------ rules

    @rule(svc=SERVICES, asynchronous=st.booleans())
    def register_service(self, svc: str, asynchronous: bool) -> None:
        handler = self._handler(asynchronous)
        if svc in self.services:
            with pytest.raises(ValueError):
                self.service.register_handler(svc, handler)
        else:
            self.service.register_handler(svc, handler)
            self.services[svc] = handler

    @rule(svc=SERVICES)
    def unregister_service(self, svc: str) -> None:
        if svc in self.services:
            self.service.unregister_handler(svc)
            del self.services[svc]
        else:
            with pytest.raises(KeyError):
                self.service.unregister_handler(svc)

    @rule(svc=SERVICES, method=METHODS, asynchronous=st.booleans())
    def register_method(self, svc: str, method: str, asynchronous: bool) -> None:
        handler = self._handler(asynchronous)
        if (svc, method) in self.methods:
            with pytest.raises(ValueError):
                self.service.register_method(svc, method, handler.handle_request)
        else:
            self.service.register_method(svc, method, handler.handle_request)
            self.methods[(svc, method)] = handler

    @rule(svc=SERVICES, method=METHODS)
    def unregister_method(self, svc: str, method: str) -> None:
        if (svc, method) in self.methods:
            self.service.unregister_method(svc, method)
            del self.methods[(svc, method)]
        else:
            with pytest.raises(KeyError):
                self.service.unregister_method(svc, method)

    @rule(svc=SERVICES, method=METHODS, timeout=st.sampled_from([None, 10.0]))
    def dispatch(self, svc: str, method: str, timeout: float | None) -> None:
        result = self.service.call(svc, method, b"req", timeout=timeout)
        expected = self.methods.get((svc, method)) or self.services.get(svc)
        if expected is None:
            assert result.code is StatusCode.UNIMPLEMENTED
            assert result.payload == b""
        else:
            assert result.code is StatusCode.OK, result
            assert result.payload == f"{expected.tag}:{svc}/{method}".encode()

    # ------------------------------------------------------------- invariants

    @invariant()
    def services_match_the_model(self) -> None:
        known = set(self.services) | {svc for svc, _ in self.methods}
        assert self.service.list_services() == sorted(known)
        for svc in ["a.Svc", "b.Svc", "pkg.sub.Other"]:
            assert self.service.has_service(svc) == (svc in known)
            assert self.service.get_handler(svc) is self.services.get(svc)
            for method in ["Get", "Put", "Delete"]:
                assert self.service.has_method(svc, method) == (
                    (svc, method) in self.methods or svc in self.services)

    @invariant()
    def live_handlers_match_the_model(self) -> None:
        expected = len(self.services) + len(self.methods)
        # An async call may hold its registration for a moment after it finished.
        assert wait_for(lambda: live_objects()["handlers"] == expected), live_objects()
        assert live_objects()["registries"] == 1

    def teardown(self) -> None:
        self.service.close()
        assert wait_for(lambda: not any(live_objects().values())), live_objects()


RegistryMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

test_registry_state_machine = pytest.mark.timeout(120, method="thread")(RegistryMachine.TestCase)
