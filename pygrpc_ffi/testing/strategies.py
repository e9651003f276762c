"""Hypothesis strategies for gRPC calls: metadata, payloads, deadlines and
protobuf messages.

Valid metadata follows the rules the C shim enforces on what handlers send
(and gRPC on the wire): keys ``[0-9a-z_.-]+``; values of ``-bin`` keys are
any bytes, other values printable ASCII without leading or trailing space.
Keys that HTTP/2 or gRPC reserve (``content-type``, ``te``, ``user-agent``,
``grpc-status``, ...) and every ``grpc-`` key are never generated as valid
ones.  Invalid metadata breaks exactly one of the rules; keys gRPC owns
(:data:`FORBIDDEN_KEYS`, which the shim refuses and the runtime drops with a
log line) are not invalid metadata.

::

    from hypothesis import given
    from pygrpc_ffi.testing import strategies as gs

    @given(gs.metadata(), gs.messages(SimpleRequest))
    def test_echo(md, request): ...
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from ..metadata import MetadataValue

__all__ = [
    "FORBIDDEN_KEYS",
    "RESERVED_KEYS",
    "binary_values",
    "deadlines",
    "invalid_metadata",
    "invalid_metadata_entries",
    "invalid_metadata_keys",
    "invalid_metadata_values",
    "message_sequences",
    "messages",
    "metadata",
    "metadata_entries",
    "metadata_keys",
    "metadata_values",
    "payloads",
    "timeouts",
]

KEY_CHARS = string.ascii_lowercase + string.digits + "-_."
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
#: Keys that are valid by the character rules but belong to HTTP/2 or gRPC.
RESERVED_KEYS = frozenset({
    "content-type", "content-length", "content-encoding", "te", "user-agent", "host",
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    "authority", "path", "method", "scheme", "status",
})


#: Keys the C shim refuses from handlers (pgf_metadata_key_owned): HTTP/2
#: connection-specific headers and the ones gRPC's framing or the call owns.
#: A handler's entry with one is dropped; the call ends as the handler chose.
FORBIDDEN_KEYS = frozenset({
    "connection", "content-length", "content-type", "keep-alive", "proxy-connection", "te",
    "transfer-encoding", "upgrade", "grpc-status", "grpc-message", "grpc-status-details-bin",
    "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-internal-encoding-request",
    "grpc-internal-stream-encoding-request", "grpc-previous-rpc-attempts", "grpc-trace-bin",
    "grpc-tags-bin", "grpc-server-stats-bin", "grpclb_client_stats",
})


def _usable_key(key: str) -> bool:
    return not key.startswith("grpc-") and key not in RESERVED_KEYS


def metadata_keys(*, binary: bool | None = False, max_size: int = 24) -> st.SearchStrategy[str]:
    """Valid keys; ``binary=True``: ending in ``-bin``; False: not; None: either."""
    if binary is None:
        return st.one_of(metadata_keys(binary=False, max_size=max_size),
                         metadata_keys(binary=True, max_size=max_size))
    base = st.text(KEY_CHARS, min_size=1, max_size=max_size)
    if binary:
        return base.map(lambda key: f"{key}-bin").filter(_usable_key)
    return base.filter(lambda key: not key.endswith("-bin") and _usable_key(key))


def metadata_values(*, max_size: int = 64) -> st.SearchStrategy[str]:
    """Valid values of non-binary keys: printable ASCII, no edge spaces."""
    return st.text(PRINTABLE, max_size=max_size).filter(
        lambda value: value == value.strip(" "))


def binary_values(*, max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Values of ``-bin`` keys: any bytes."""
    return st.binary(max_size=max_size)


def metadata_entries() -> st.SearchStrategy[tuple[str, MetadataValue]]:
    """One valid (key, value): str value, or bytes for a ``-bin`` key."""
    text: st.SearchStrategy[tuple[str, MetadataValue]] = st.tuples(metadata_keys(),
                                                                   metadata_values())
    raw: st.SearchStrategy[tuple[str, MetadataValue]] = st.tuples(metadata_keys(binary=True),
                                                                  binary_values())
    return st.one_of(text, raw)


def metadata(*, max_entries: int = 8) -> st.SearchStrategy[list[tuple[str, MetadataValue]]]:
    """A valid metadata list: (key, value) pairs, keys may repeat."""
    return st.lists(metadata_entries(), max_size=max_entries)


def invalid_metadata_keys() -> st.SearchStrategy[str]:
    """Malformed keys: empty, upper case, other characters, non-ASCII."""
    return st.one_of(
        st.just(""),
        st.tuples(st.text(KEY_CHARS, max_size=8),
                  st.characters(blacklist_characters=KEY_CHARS),
                  st.text(KEY_CHARS, max_size=8)).map("".join),
    )


def invalid_metadata_values() -> st.SearchStrategy[str]:
    """Values a handler may not send with a non-binary key: control or
    non-ASCII characters, or a leading or trailing space."""
    bad_char = st.characters(blacklist_characters=PRINTABLE)
    return st.one_of(
        st.tuples(metadata_values(max_size=8), bad_char, metadata_values(max_size=8)).map(
            "".join),
        metadata_values(max_size=8).map(lambda value: f" {value}"),
        metadata_values(max_size=8).map(lambda value: f"{value} "),
    )


def invalid_metadata_entries() -> st.SearchStrategy[tuple[str, MetadataValue]]:
    """One invalid entry: a bad key, or a bad value for a non-binary key."""
    bad_key: st.SearchStrategy[tuple[str, MetadataValue]] = st.tuples(invalid_metadata_keys(),
                                                                      metadata_values())
    bad_value: st.SearchStrategy[tuple[str, MetadataValue]] = st.tuples(
        metadata_keys(), invalid_metadata_values())
    return st.one_of(bad_key, bad_value)


def invalid_metadata(*, max_entries: int = 6) -> st.SearchStrategy[list[tuple[str,
                                                                              MetadataValue]]]:
    """Valid entries with exactly one invalid entry among them."""
    return st.tuples(metadata(max_entries=max_entries), invalid_metadata_entries(),
                     st.integers(min_value=0, max_value=max_entries)).map(
        lambda parts: [*parts[0][:parts[2]], parts[1], *parts[0][parts[2]:]])


def payloads(*, max_size: int = 64 * 1024) -> st.SearchStrategy[bytes]:
    """Request or response payloads (bytes; empty included)."""
    return st.binary(max_size=max_size)


def timeouts(*, min_value: float = 0.5, max_value: float = 60.0) -> st.SearchStrategy[float]:
    """Call timeouts, seconds."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False,
                     allow_infinity=False)


def deadlines(*, min_value: float = 0.5, max_value: float = 60.0,
              allow_none: bool = True) -> st.SearchStrategy[float | None]:
    """A call's timeout, or None (no deadline) if ``allow_none``."""
    strategy: st.SearchStrategy[float | None] = timeouts(min_value=min_value,
                                                         max_value=max_value)
    return st.one_of(st.none(), strategy) if allow_none else strategy


# ----------------------------------------------------------------- messages

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1), "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "fixed32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1), "fixed64": (0, 2**64 - 1),
}


def _type_name(field: Any) -> str:
    from google.protobuf.descriptor import FieldDescriptor

    for name in dir(FieldDescriptor):
        if name.startswith("TYPE_") and getattr(FieldDescriptor, name) == field.type:
            return name[5:].lower()
    raise ValueError(f"unknown field type {field.type}")  # pragma: no cover


def _scalar(field: Any, max_size: int, depth: int) -> st.SearchStrategy[Any]:
    kind = _type_name(field)
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return st.integers(low, high)
    if kind == "bool":
        return st.booleans()
    if kind == "double":
        return st.floats(allow_nan=False)
    if kind == "float":
        return st.floats(width=32, allow_nan=False)
    if kind == "string":
        return st.text(max_size=max_size)
    if kind == "bytes":
        return st.binary(max_size=max_size)
    if kind == "enum":
        return st.sampled_from([value.number for value in field.enum_type.values])
    if kind in ("message", "group"):
        return _message_dicts(field.message_type, max_size, depth - 1)
    raise ValueError(f"unsupported field type {kind}")  # pragma: no cover


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == field.LABEL_REPEATED)  # pragma: no cover - older protobuf


def _is_required(field: Any) -> bool:
    required = getattr(field, "is_required", None)
    if required is not None:
        return bool(required)
    return bool(field.label == field.LABEL_REQUIRED)  # pragma: no cover - older protobuf


def _message_dicts(descriptor: Any, max_size: int, depth: int) -> st.SearchStrategy[Any]:
    """Field values for a message of ``descriptor``, as ``(descriptor,
    {name: value})``, applied by :func:`_build`.  Below ``max_depth`` only
    (proto2) required fields are filled."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if _is_required(field):
            required[field.name] = _scalar(field, max_size, depth)
            continue
        if depth < 0:
            continue
        map_entry = (field.message_type is not None
                     and field.message_type.GetOptions().map_entry)
        if map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            optional[field.name] = st.dictionaries(
                _scalar(key_field, max_size, depth), _scalar(value_field, max_size, depth),
                max_size=3)
        elif _is_repeated(field):
            optional[field.name] = st.lists(_scalar(field, max_size, depth), max_size=3)
        else:
            optional[field.name] = _scalar(field, max_size, depth)
    # Each optional field is present or not; of a oneof, at most one.
    chosen = st.fixed_dictionaries(required, optional=optional)
    oneofs = [[f.name for f in oneof.fields] for oneof in descriptor.oneofs]

    def one_per_oneof(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        for names in oneofs:
            present = [name for name in names if name in values]
            for name in present[1:]:
                del values[name]
        return descriptor, values

    return chosen.map(one_per_oneof)


def _build(message_class: Any, spec: Any) -> Any:
    descriptor, values = spec
    message = message_class()
    _fill(message, descriptor, values)
    return message


def _fill(message: Any, descriptor: Any, values: dict[str, Any]) -> None:
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if value_field.message_type is not None:
                    _fill(target[key], value_field.message_type, item[1])
                else:
                    target[key] = item
        elif _is_repeated(field):
            for item in value:
                if field.message_type is not None:
                    _fill(target.add(), field.message_type, item[1])
                else:
                    target.append(item)
        elif field.message_type is not None:
            target.SetInParent()
            _fill(target, field.message_type, value[1])
        else:
            setattr(message, name, value)


def messages(message_class: Any, *, max_size: int = 32,
             max_depth: int = 3) -> st.SearchStrategy[Any]:
    """Instances of a protobuf message class, built from its descriptor's
    fields: scalars, enums, nested messages (to ``max_depth``), repeated
    fields, maps and oneofs; strings and bytes up to ``max_size``."""
    descriptor = message_class.DESCRIPTOR
    return _message_dicts(descriptor, max_size, max_depth).map(
        lambda spec: _build(message_class, spec))


def message_sequences(message_class: Any = None, *, min_size: int = 0, max_size: int = 8,
                      max_payload: int = 4096) -> st.SearchStrategy[list[Any]]:
    """Request or response streams: lists of protobuf messages of
    ``message_class`` (see :func:`messages`), or of payloads (bytes) without
    one; empty streams included unless ``min_size`` says otherwise."""
    element: st.SearchStrategy[Any] = (
        payloads(max_size=max_payload) if message_class is None
        else messages(message_class, max_size=min(max_payload, 32)))
    return st.lists(element, min_size=min_size, max_size=max_size)
