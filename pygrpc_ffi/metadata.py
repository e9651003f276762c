"""Multi-valued gRPC metadata: ``-bin`` values are bytes, all others str."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

MetadataValue = str | bytes
MetadataLike = Mapping[str, MetadataValue] | Iterable[tuple[str, MetadataValue]] | None


def is_binary_key(key: str) -> bool:
    """Whether values of ``key`` are raw bytes: gRPC core's rule, the key is at
    least 5 characters long and ends in ``-bin`` (``"-bin"`` alone is not)."""
    return len(key) >= 5 and key.endswith("-bin")


class Metadata(MutableMapping[str, MetadataValue]):
    """An ordered, multi-valued mapping of metadata.

    ``md[key]`` and ``md.get(key)`` give the first value; ``get_all(key)``
    gives every value; iterating gives each key once; ``pairs()`` gives every
    (key, value) in order, as grpcio's ``invocation_metadata()`` does.
    Look-ups ignore case, as HTTP/2 header names do: a key a client sent in
    upper case (which HTTP/2 forbids, but hosts may pass on) is found under
    any spelling, and iteration gives keys in lower case.  ``md[key] = v``
    replaces every value of ``key`` with ``v`` (where its first value was, or
    at the end); ``del md[key]`` removes them all; ``add(key, v)`` appends
    one more.  Changing a request's metadata changes only this Python copy.
    """

    __slots__ = ("_index", "_pairs")

    def __init__(self, pairs: MetadataLike = None) -> None:
        self._pairs: tuple[tuple[str, MetadataValue], ...] = tuple(iter_pairs(pairs))
        self._index: dict[str, list[MetadataValue]] | None = None

    @classmethod
    def _from_pairs(cls, pairs: list[tuple[str, MetadataValue]]) -> Metadata:
        md = cls.__new__(cls)
        md._pairs = tuple(pairs)
        md._index = None
        return md

    def _lookup(self) -> dict[str, list[MetadataValue]]:
        if self._index is None:
            index: dict[str, list[MetadataValue]] = {}
            for key, value in self._pairs:
                index.setdefault(key.lower(), []).append(value)
            self._index = index
        return self._index

    def __getitem__(self, key: str) -> MetadataValue:
        return self._lookup()[key.lower()][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lookup()

    def __setitem__(self, key: str, value: MetadataValue) -> None:
        if not isinstance(key, str):
            raise TypeError(f"metadata key must be str, not {type(key).__name__}")
        if not isinstance(value, (str, bytes)):
            raise TypeError(f"metadata value must be str or bytes, not {type(value).__name__}")
        lowered = key.lower()
        pairs: list[tuple[str, MetadataValue]] = []
        placed = False
        for k, v in self._pairs:
            if k.lower() == lowered:
                if not placed:
                    pairs.append((lowered, value))
                    placed = True
                continue
            pairs.append((k, v))
        if not placed:
            pairs.append((lowered, value))
        self._pairs = tuple(pairs)
        self._index = None

    def __delitem__(self, key: str) -> None:
        lowered = key.lower()
        if lowered not in self._lookup():
            raise KeyError(key)
        self._pairs = tuple((k, v) for k, v in self._pairs if k.lower() != lowered)
        self._index = None

    def add(self, key: str, value: MetadataValue) -> None:
        """Appends one more value of ``key``."""
        if not isinstance(key, str) or not isinstance(value, (str, bytes)):
            raise TypeError("metadata keys are str and values str or bytes")
        self._pairs = (*self._pairs, (key.lower(), value))
        self._index = None

    def get_all(self, key: str) -> list[MetadataValue]:
        """Every value of ``key``, in the order received."""
        return list(self._lookup().get(key.lower(), ()))

    def pairs(self) -> tuple[tuple[str, MetadataValue], ...]:
        """Every (key, value) entry, in the order received."""
        return self._pairs

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metadata):
            return self._pairs == other._pairs
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metadata({list(self._pairs)!r})"


def iter_pairs(metadata: object,
               bad: Callable[[str], None] | None = None) -> Iterator[tuple[Any, Any]]:
    """The (key, value) entries of metadata in any form the package accepts:
    None, a :class:`Metadata` (every value), any other mapping (its items) or
    an iterable of (key, value) pairs.  The one place that reads metadata a
    user gives (responses, errors, contexts, test calls): a dict is never
    taken for an iterable of its keys.

    What is not metadata (a str, bytes or a number as the container; an entry
    that is not a pair, such as ``"ab"`` or ``("k",)``) raises TypeError, or,
    with ``bad``, is reported to ``bad(reason)`` and skipped.  Keys and values
    are not checked here (see :func:`encode_entry`)."""
    if metadata is None:
        return
    if isinstance(metadata, Metadata):
        yield from metadata.pairs()
        return
    if isinstance(metadata, Mapping):
        yield from metadata.items()
        return
    if isinstance(metadata, (str, bytes, bytearray, memoryview)) or not isinstance(
            metadata, Iterable):
        _bad(bad, f"metadata must be a mapping or (key, value) pairs, not "
                  f"{type(metadata).__name__}")
        return
    for entry in metadata:
        if isinstance(entry, (str, bytes, bytearray, memoryview)) or not isinstance(
                entry, (tuple, list)) or len(entry) != 2:
            _bad(bad, f"metadata entry {entry!r} is not a (key, value) pair")
            continue
        yield entry[0], entry[1]


def _bad(bad: Callable[[str], None] | None, reason: str) -> None:
    if bad is None:
        raise TypeError(reason)
    bad(reason)


def metadata_pairs(metadata: object,
                   bad: Callable[[str], None] | None = None) -> list[tuple[Any, Any]]:
    """:func:`iter_pairs` as a list."""
    return list(iter_pairs(metadata, bad))


def request_value_bytes(key: object, value: object) -> bytes:
    """The wire form of a request metadata value a caller passes (as a client
    would): str (latin-1, else UTF-8) or bytes-like; anything else, such as
    an int (``bytes(5)`` would be five NUL bytes), is a TypeError."""
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"value of metadata key {key!r} must be str or bytes, not {type(value).__name__}"
    )


def encode_entry(key: object, value: object) -> tuple[bytes, bytes]:
    """The wire form of one entry a handler sends, or ValueError/TypeError.

    Types are checked here; the C shim checks the gRPC character rules.
    """
    if not isinstance(key, str):
        raise TypeError(f"metadata key must be str, not {type(key).__name__}")
    if is_binary_key(key):
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"value of binary key {key!r} must be bytes, not {type(value).__name__}"
            )
        raw = bytes(value)
    elif isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"value of {key!r} is not ASCII") from None
    else:
        raise TypeError(f"value of {key!r} must be str, not {type(value).__name__}")
    try:
        return key.encode("ascii"), raw
    except UnicodeEncodeError:
        raise ValueError(f"metadata key {key!r} is not ASCII") from None
