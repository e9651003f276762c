"""Names (``pgf_name``) and metadata lists (``pgf_metadata``) as bytes."""

from __future__ import annotations

from typing import Any

from .._native import ffi, lib
from .base import ensure

#: name_unref(name): drops a reference (cannot fail).
name_unref = lib.pgf_name_unref


def name_bytes(name: Any) -> bytes:
    """The bytes of a name."""
    return bytes(ffi.string(lib.pgf_name_str(name)))


def entries(md: Any) -> list[tuple[str, bytes]]:
    """The entries of a metadata list: keys decoded (latin-1), values raw."""
    count = lib.pgf_metadata_count(md)
    pairs: list[tuple[str, bytes]] = []
    if count:
        key_p = ffi.new("const char **")
        key_len = ffi.new("size_t *")
        value_p = ffi.new("const uint8_t **")
        value_len = ffi.new("size_t *")
        for i in range(count):
            ensure(lib.pgf_metadata_get(md, i, key_p, key_len, value_p, value_len),
                   "pgf_metadata_get")
            key = ffi.unpack(key_p[0], key_len[0]).decode("latin-1")
            pairs.append((key, ffi.buffer(value_p[0], value_len[0])[:]))
    return pairs


def key_owned(key: bytes) -> bool:
    """Whether the shim refuses ``key`` because HTTP/2, gRPC or the call owns
    it (not because it is malformed)."""
    return bool(lib.pgf_metadata_key_owned(key, len(key)))
