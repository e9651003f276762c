"""Calls (``pgf_call``): made and referenced, the request side a host sets,
the fields a handler reads, the response side and the finish."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from .._native import ffi, lib
from .base import NULL, OK, PgfError, copy_bytes, ensure
from .metadata import entries
from .trampolines import CANCEL

# ------------------------------------------------------------ the object

#: ref(call) -> call: one more reference (cannot fail).
ref = lib.pgf_call_ref
#: unref(call): drops a reference (cannot fail).
unref = lib.pgf_call_unref


#: at(address) -> the ``pgf_call *`` at an address (the fast path passes
#: calls so).
at = partial(ffi.cast, "pgf_call *")


def pointer(call: Any) -> Any:
    """The ``pgf_call *`` of a call given as a pointer or as an address."""
    return at(call) if type(call) is int else call


def new(path: bytes) -> Any:
    """A new call (OWNED: release with :func:`unref`), or None if ``path``
    is not a method path."""
    call = lib.pgf_call_new(path, len(path))
    return None if call == NULL else call


# --------------------------------------------------- request side (a host's)


def set_request_message(call: Any, msg: Any) -> None:
    """Sets the request message (the reference is the call's, also on error)."""
    rc = lib.pgf_call_set_request_message(call, msg)
    if rc != OK:  # ensure(), inline: once per call made from Python
        raise PgfError(rc, "pgf_call_set_request_message")


def add_request_metadata(call: Any, key: bytes, value: bytes) -> None:
    ensure(lib.pgf_call_add_request_metadata(call, key, len(key), value, len(value)),
           "pgf_call_add_request_metadata")


def set_deadline(call: Any, deadline_unix_ns: int) -> None:
    ensure(lib.pgf_call_set_deadline(call, deadline_unix_ns), "pgf_call_set_deadline")


def set_peer(call: Any, peer: bytes) -> None:
    rc = lib.pgf_call_set_peer(call, peer, len(peer))
    if rc != OK:  # ensure(), inline: once per call made from Python
        raise PgfError(rc, "pgf_call_set_peer")


def set_auth(call: Any, properties: Iterable[tuple[bytes, bytes]],
             identity_key: bytes | None) -> None:
    """Adds the transport's auth properties (name, value) in order, and the
    name of the one that holds the peer's identity (None: unauthenticated)."""
    for name, value in properties:
        ensure(lib.pgf_call_add_auth_property(call, name, len(name), value, len(value)),
               "pgf_call_add_auth_property")
    if identity_key:
        ensure(lib.pgf_call_set_peer_identity_key(call, identity_key, len(identity_key)),
               "pgf_call_set_peer_identity_key")


# ------------------------------------------------- what a handler reads

#: service(call), method(call) -> its BORROWED ``pgf_name *`` names.
service = lib.pgf_call_service
method = lib.pgf_call_method
#: request_metadata(call) -> its BORROWED ``pgf_metadata *``.
request_metadata = lib.pgf_call_request_metadata
#: deadline(call) -> Unix ns, or 2**63 - 1 for none.
deadline = lib.pgf_call_deadline
#: request_of(call) -> struct {data, len, msg}: the request's bytes and a new
#: reference to its message (msg NULL when the host only lent the bytes).
request_of = lib._pgf_request_of


def peer(call: Any, *, whole: bool = True) -> str:
    """The peer's address as the host gave it ("" if none); ``whole``
    False: up to its first NUL."""
    if not whole:
        raw = lib.pgf_call_peer(call, NULL)
        return ffi.string(raw).decode("utf-8", "replace") if raw[0] != b"\0" else ""
    size = ffi.new("size_t *")
    raw = lib.pgf_call_peer(call, size)
    return str(ffi.unpack(raw, size[0]).decode("utf-8", "replace"))


def auth(call: Any) -> tuple[list[tuple[str, bytes]], str | None]:
    """The auth properties the host added, in order (names decoded
    latin-1), and the peer identity key (None if not authenticated)."""
    properties = entries(lib.pgf_call_auth_properties(call))
    size = ffi.new("size_t *")
    raw = lib.pgf_call_peer_identity_key(call, size)
    key = ffi.unpack(raw, size[0]).decode("latin-1") if size[0] else None
    return properties, key


def request_copy(raw: Any) -> bytes:
    """A copy of the bytes of a :func:`request_of` result."""
    return copy_bytes(raw.data, raw.len)


# ------------------------------------------------------------ cancellation

#: cancel(call): marks it cancelled and runs its cancel hook (idempotent).
cancel = lib.pgf_call_cancel
is_cancelled = lib.pgf_call_is_cancelled


def set_cancel_hook(call: Any, handle: Any) -> bool:
    """Has C run the cancel trampoline with ``handle`` once the call is
    cancelled (at once if it already is); False if the call is finished (C
    never runs it then)."""
    rc = lib.pgf_call_on_cancel(call, CANCEL, handle)
    if rc == lib.PGF_ESTATE:
        return False
    ensure(rc, "pgf_call_on_cancel")
    return True


# ----------------------------------------------------------- response side


def add_initial_metadata(call: Any, key: bytes, value: bytes) -> None:
    """Appends an initial metadata entry; PgfError (PGF_EMETADATA: invalid
    or over budget, PGF_ESTATE: after the first message) leaves the call
    unchanged."""
    ensure(lib.pgf_call_add_initial_metadata(call, key, len(key), value, len(value)),
           "pgf_call_add_initial_metadata")


def add_trailing_metadata(call: Any, key: bytes, value: bytes) -> None:
    """Appends a trailing metadata entry, as :func:`add_initial_metadata`."""
    ensure(lib.pgf_call_add_trailing_metadata(call, key, len(key), value, len(value)),
           "pgf_call_add_trailing_metadata")


def set_status_details(call: Any, details: bytes) -> None:
    ensure(lib.pgf_call_set_status_details(call, details, len(details)),
           "pgf_call_set_status_details")


def compress_response_quietly(call: Any) -> None:
    """Asks the host to compress the response.  Fails only on a finished
    call, whose response is already gone: nothing to compress then."""
    lib.pgf_call_set_compress_response(call, 1)


def set_response(call: Any, buf: Any, release: Any, ctx: Any) -> None:
    """Sets the response payload, OWNED by the call (``release(ctx)`` runs
    once, also on error)."""
    ensure(lib.pgf_call_set_response(call, buf, len(buf), release, ctx),
           "pgf_call_set_response")


def reset_response_quietly(call: Any) -> None:
    """Drops the response set so far.  Fails only for a finished call, whose
    response is the host's by then: nothing to drop."""
    lib.pgf_call_reset_response(call)


def finish_quietly(call: Any, code: int, message: bytes | None = None) -> None:
    """Finishes the call.  Fails (PGF_ESTATE) only if it is finished
    already: the first finish's status stands, as gRPC's first status does."""
    if message is None:
        lib.pgf_call_finish(call, code, NULL, 0)
    else:
        lib.pgf_call_finish(call, code, message, len(message))


is_finished = lib.pgf_call_is_finished
#: finish_copy_quietly(call, answer bytes, size): the response is a copy of
#: the answer, then the call is finished OK (RESOURCE_EXHAUSTED if it cannot
#: be copied).  Its status is ignored as finish_quietly's is.
finish_copy_quietly = lib._pgf_finish_copy
#: finish_buffer_quietly(call, buf, size, release, ctx): the response is buf,
#: OWNED by the call; then as finish_copy_quietly.
finish_buffer_quietly = lib._pgf_finish_ok


# ------------------------------------------------ the answer, as a host reads

#: status(call) -> the status code it finished with.
status = lib.pgf_call_status
#: initial_metadata(call) / trailing_metadata(call) -> the BORROWED
#: ``pgf_metadata *`` the handler sent (see metadata.entries).
initial_metadata = lib.pgf_call_initial_metadata
trailing_metadata = lib.pgf_call_trailing_metadata
#: compress_response(call) -> 1 if the handler asked for compression.
compress_response = lib.pgf_call_compress_response


def status_message(call: Any) -> str:
    """The status message (read by length: it may hold NULs)."""
    size = ffi.new("size_t *")
    raw = lib.pgf_call_status_message(call, size)
    return str(ffi.unpack(raw, size[0]).decode("utf-8", "replace"))


def answer(call: Any, payload: bool = True) -> tuple[int, str, bytes, bytes | None]:
    """The status code, status message (read by length: it may hold NULs),
    a copy of the response payload (b"" if none or not asked) and of the
    serialized google.rpc.Status (None if none) of a finished call."""
    data = ffi.new("const uint8_t **")
    size = ffi.new("size_t *")
    raw = lib.pgf_call_status_message(call, size)
    message = ffi.unpack(raw, size[0]).decode("utf-8", "replace")
    body = b""
    if payload:
        lib.pgf_call_response(call, data, size)
        body = copy_bytes(data[0], size[0])
    lib.pgf_call_status_details(call, data, size)
    details = ffi.buffer(data[0], size[0])[:] if size[0] else None
    return lib.pgf_call_status(call), message, body, details

