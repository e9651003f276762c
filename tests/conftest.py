"""Shared fixtures for the core binding's tests.

Every test runs through the C path (``GrpcService.call``/``acall`` dispatch
into a C registry), and every test must leave no C object behind: an autouse
fixture waits briefly for in-flight async handlers and then asserts that
``live_objects()`` is back where it was before the test (all zero normally).
"""

from __future__ import annotations

import gc
import pathlib
import time
from collections.abc import Iterator

import pytest

import pygrpc_ffi
from pygrpc_ffi import GrpcService, live_objects

TESTS_DIR = pathlib.Path(__file__).resolve().parent
DEFAULT_TIMEOUT = 30  # seconds, for tests of this directory without their own marker

LOGGER = "pygrpc_ffi"


def wait_for_live(expected: dict[str, int], timeout: float = 3.0) -> dict[str, int]:
    """Polls the C live counters until they equal ``expected`` or time runs out;
    returns the last reading."""
    deadline = time.monotonic() + timeout
    current = live_objects()
    while current != expected and time.monotonic() < deadline:
        # A request view in a reference cycle (a traceback, a closure) holds
        # its message until the cycle is collected.
        gc.collect()
        time.sleep(0.005)
        current = live_objects()
    return current


def zero_counters() -> dict[str, int]:
    return dict.fromkeys(live_objects(), 0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "no_leak_check: skip the autouse check of the C live-object counters"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A hang must fail the test, not block CI: tests of this directory get a
    # timeout unless they chose one (tests in subdirectories are left alone).
    for item in items:
        if pathlib.Path(str(item.fspath)).resolve().parent != TESTS_DIR:
            continue
        if item.get_closest_marker("timeout") is None:
            # The thread method also ends a test blocked in C (a signal cannot).
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT, method="thread"))


@pytest.fixture(autouse=True)
def no_leaked_c_objects(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, the C counters (names, handlers, calls, registries,
    buffers) are back to their value before it: zero unless something
    outside this test (another suite's module) holds registrations."""
    if request.node.get_closest_marker("no_leak_check"):
        yield
        return
    before = live_objects()
    if any(before.values()):
        # Something from an earlier test may still be finishing: give it a moment.
        before = wait_for_live(zero_counters(), timeout=1.0)
    yield
    after = wait_for_live(before)
    assert after == before, f"C objects leaked: before {before}, after {after}"


@pytest.fixture
def service() -> Iterator[GrpcService]:
    """A fresh GrpcService with its own C registry, closed at teardown."""
    svc = GrpcService()
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def exposing_service() -> Iterator[GrpcService]:
    """A fresh GrpcService that sends INTERNAL errors' text to the client."""
    svc = GrpcService(expose_exceptions=True)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def restore_exception_table() -> Iterator[None]:
    """Undoes register_exception calls made by a test."""
    from pygrpc_ffi import errors

    saved = dict(errors._table)
    saved_send = dict(errors._send_message)
    try:
        yield
    finally:
        with errors._table_lock:
            errors._table.clear()
            errors._table.update(saved)
            errors._send_message.clear()
            errors._send_message.update(saved_send)


@pytest.fixture
def clean_default_service() -> Iterator[GrpcService]:
    """The process-wide default service; whatever the test registers in it is
    unregistered at teardown."""
    svc = pygrpc_ffi.default_service()
    services_before = set(svc._services)
    methods_before = set(svc._methods)
    try:
        yield svc
    finally:
        for name in set(svc._services) - services_before:
            try:
                svc.unregister_handler(name)
            except KeyError:
                pass
        for svc_name, method in set(svc._methods) - methods_before:
            try:
                svc.unregister_method(svc_name, method)
            except KeyError:
                pass
