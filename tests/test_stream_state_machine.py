"""A stream's lifecycle driven from Python in any order (hypothesis): reads,
pushes, writes, takes, completions, cancel and finish, against a model of
the rules in pygrpc_ffi.h ("streams").  Every read or write that was
accepted gets exactly one callback, with the result the model expects, and
nothing is left alive at the end."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pygrpc_ffi._native import ffi, lib

from pygrpc_ffi import live_objects
from pygrpc_ffi._runtime.handles import handles
from pygrpc_ffi._runtime.requests import new_message

OK, EOF, CANCELLED = lib.PGF_OK, lib.PGF_EOF, lib.PGF_ECANCELLED


class Completion:
    """What C reported for one read or write (see _streams.complete_*)."""

    def __init__(self, log: list[tuple[str, int, bytes | None]], what: str) -> None:
        self.log = log
        self.what = what

    def complete(self, result: int, msg: Any) -> None:
        data = None
        if msg != ffi.NULL:
            raw = lib._pgf_message_bytes(msg)
            data = ffi.buffer(raw.data, raw.len)[:] if raw.len else b""
            lib.pgf_message_unref(msg)
        self.log.append((self.what, result, data))


class Host:
    """Records the events the call reports."""

    def __init__(self) -> None:
        self.events: list[int] = []

    def event(self, call: Any, event: int) -> None:
        self.events.append(event)


class StreamLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = live_objects()
        self.call = lib.pgf_call_new(b"/s.S/M", 6)
        self.host = Host()
        self.host_handle = handles.add(self.host)
        assert lib.pgf_call_set_stream(self.call, lib._pgf_py_stream_event,
                                       self.host_handle) == OK
        self.log: list[tuple[str, int, bytes | None]] = []
        self.expected: list[tuple[str, int, bytes | None]] = []
        self.read_pending = False
        self.ended = False
        self.write_state = "none"  # queued, taken
        self.taken: tuple[Any, Any] | None = None
        self.cancelled = False
        self.finished = False

    def over(self) -> bool:
        return self.cancelled or self.finished

    @rule()
    def read(self) -> None:
        handle = handles.add(Completion(self.log, "read"))
        rc = lib.pgf_call_read(self.call, lib._pgf_py_read_done, handle)
        if self.read_pending:
            assert rc == lib.PGF_ESTATE
        elif self.over():
            assert rc == CANCELLED
        else:
            assert rc == OK
            if self.ended:
                self.expected.append(("read", EOF, None))
            else:
                assert self.host.events[-1] == lib.PGF_EVENT_READ
                self.read_pending = True
        if rc != OK:
            handles.pop(handle)

    @rule(payload=st.one_of(st.none(), st.binary(max_size=8)))
    def push(self, payload: bytes | None) -> None:
        msg = ffi.NULL if payload is None else new_message(payload)
        rc = lib.pgf_call_push_request(self.call, msg)
        if self.read_pending:
            assert rc == OK
            self.read_pending = False
            if payload is None:
                self.ended = True
                self.expected.append(("read", EOF, None))
            else:
                self.expected.append(("read", OK, payload))
        else:
            assert rc == lib.PGF_ESTATE

    @rule(payload=st.binary(max_size=8))
    def write(self, payload: bytes) -> None:
        handle = handles.add(Completion(self.log, "write"))
        buf = ffi.from_buffer(payload)
        rc = lib.pgf_call_write(self.call, buf, len(buf), lib._pgf_py_release_buffer,
                                handles.add(buf), lib._pgf_py_write_done, handle)
        if self.write_state != "none" or self.finished:
            assert rc == lib.PGF_ESTATE
        elif self.cancelled:
            assert rc == CANCELLED
        else:
            assert rc == OK
            assert self.host.events[-1] == lib.PGF_EVENT_WRITE
            self.write_state = "queued"
        if rc != OK:
            handles.pop(handle)

    @rule()
    def take(self) -> None:
        data = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        release = ffi.new("pgf_release_fn *")
        ctx = ffi.new("void **")
        rc = lib.pgf_call_take_write(self.call, data, size, release, ctx, ffi.NULL)
        if self.write_state == "queued":
            assert rc == OK
            self.write_state = "taken"
            self.taken = (release[0], ctx[0])
        else:
            assert rc == lib.PGF_ENOTFOUND

    @rule(ok=st.booleans())
    def write_done(self, ok: bool) -> None:
        rc = lib.pgf_call_write_done(self.call, int(ok))
        if self.write_state == "taken":
            assert rc == OK
            self.write_state = "none"
            self.expected.append(("write", OK if ok else CANCELLED, None))
            self.release_taken()
        else:
            assert rc == lib.PGF_ESTATE

    def release_taken(self) -> None:
        if self.taken is not None:
            release, ctx = self.taken
            if release != ffi.NULL:
                release(ctx)
            self.taken = None

    @rule()
    def cancel(self) -> None:
        lib.pgf_call_cancel(self.call)
        if self.over():
            return
        self.cancelled = True
        if self.read_pending:
            self.read_pending = False
            self.expected.append(("read", CANCELLED, None))
        if self.write_state == "queued":
            self.write_state = "none"
            self.expected.append(("write", CANCELLED, None))

    @rule()
    def finish(self) -> None:
        rc = lib.pgf_call_finish(self.call, 0, ffi.NULL, 0)
        if self.finished:
            assert rc == lib.PGF_ESTATE
            return
        assert rc == OK
        self.finished = True
        if self.read_pending:
            self.read_pending = False
            self.expected.append(("read", CANCELLED, None))

    @invariant()
    def callbacks_match_the_model(self) -> None:
        assert self.log == self.expected

    def teardown(self) -> None:
        if self.write_state == "taken":
            assert lib.pgf_call_write_done(self.call, 0) == OK
            self.expected.append(("write", CANCELLED, None))
            self.release_taken()
        if not self.finished:
            lib.pgf_call_finish(self.call, 1, ffi.NULL, 0)
            if self.read_pending:
                self.expected.append(("read", CANCELLED, None))
        if self.write_state == "queued":  # after the read: the unref completes it
            self.expected.append(("write", CANCELLED, None))
        lib.pgf_call_unref(self.call)  # completes a write left queued
        handles.pop(self.host_handle)
        assert self.log == self.expected
        assert live_objects() == self.base


TestStreamLifecycle = StreamLifecycle.TestCase
TestStreamLifecycle.settings = settings(max_examples=100, stateful_step_count=30,
                                        deadline=None)
