"""The C++ host's handler threads run under SCHED_BATCH by default, so that
a worker woken for a call does not preempt gRPC's network thread (with four
workers on two cores that preemption cost a fifth of the echo's throughput,
bench/results/NOTES.md); ``--worker-scheduling normal`` keeps SCHED_OTHER.
gRPC's own threads keep SCHED_OTHER either way."""

from __future__ import annotations

import os
import pathlib

import pytest
from streams_kit import UNARY_C, UNARY_PY, Host


def policies_by_thread_name(pid: int) -> dict[str, set[int]]:
    """Each thread name of the process (digits stripped) with the scheduling
    policies its threads run under."""
    out: dict[str, set[int]] = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip().rstrip("0123456789").rstrip("-")
        out.setdefault(name, set()).add(os.sched_getscheduler(int(task.name)))
    return out


def serve_and_read_policies(*extra: str) -> dict[str, set[int]]:
    host = Host(*extra)
    try:
        with host.channel() as channel:
            # A Python handler runs on a worker; a C one on gRPC's thread.
            assert channel.unary_unary(UNARY_PY)(b"", timeout=10) == b""
            assert channel.unary_unary(UNARY_C)(b"c", timeout=10) == b"c"
        return policies_by_thread_name(host.process.pid)
    finally:
        assert host.stop() == 0


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_handler_threads_run_under_sched_batch_and_grpc_threads_do_not() -> None:
    policies = serve_and_read_policies()
    assert policies["pgf-worker"] == {os.SCHED_BATCH}
    assert policies["pgf-stream"] == {os.SCHED_BATCH}
    others = {name: p for name, p in policies.items()
              if name not in ("pgf-worker", "pgf-stream")}
    assert others and all(p == {os.SCHED_OTHER} for p in others.values()), others


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_worker_scheduling_normal_keeps_sched_other_everywhere() -> None:
    policies = serve_and_read_policies("--worker-scheduling", "normal")
    assert all(p == {os.SCHED_OTHER} for p in policies.values()), policies


def test_serve_passes_the_worker_scheduling_through() -> None:
    from pygrpc_ffi.cli import build_parser, host_command

    def command(*extra: str) -> list[str]:
        args = build_parser().parse_args(["serve", "m", *extra])
        return host_command(args, pathlib.Path("pygrpc_ffi_server"))

    normal = command("--worker-scheduling", "normal")
    assert normal[normal.index("--worker-scheduling") + 1] == "normal"
    assert "--worker-scheduling" not in command()  # the host's default
