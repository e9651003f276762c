"""A process that forks after serving ``async def`` handlers: the child
serves them on a loop and a finisher of its own, and the parent, serving at
the same time, loses none of its calls to the child."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import warnings

import pytest

from pygrpc_ffi import GrpcRequest, GrpcService, StatusCode

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")

CALLS = 200


def exit_code(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None if it had to be killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def serve_calls(service: GrpcService, tag: bytes) -> str:
    """The first call that did not come back from this process's handler,
    or "" if none."""
    for i in range(CALLS):
        payload = tag + b" %d" % i
        result = service.call("pkg.Forked", "Echo", payload, timeout=5)
        expected = b"%d:" % os.getpid() + payload
        if result.code != StatusCode.OK or result.payload != expected:
            return f"{payload!r}: {result.code.name} {result.payload!r}"
    return ""


def test_a_forked_child_serves_async_handlers_while_the_parent_still_does(
        service: GrpcService) -> None:
    async def echo(request: GrpcRequest) -> bytes:
        await asyncio.sleep(0)
        return b"%d:" % os.getpid() + bytes(request.payload)

    service.register_method("pkg.Forked", "Echo", echo)
    # The loop thread and the finisher run from here on.
    assert serve_calls(service, b"before") == ""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork with threads
        pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = 0 if serve_calls(service, b"child") == "" else 1
        finally:
            os._exit(code)

    assert serve_calls(service, b"parent") == ""
    assert exit_code(pid, timeout=120) == 0
