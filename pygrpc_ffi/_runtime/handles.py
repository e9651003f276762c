"""Python objects whose handles C holds, kept alive until C gives them back."""

from __future__ import annotations

from typing import Any

from .._binding.base import from_handle, new_handle


class Handles:
    """Keeps objects whose handles C holds, until C gives the handle back.

    Keyed by the handle itself: cffi pointers hash and compare by address, so
    the ``void *`` that C hands back finds its entry without a cast.
    """

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}

    def add(self, obj: object) -> Any:
        handle = new_handle(obj)
        self._items[handle] = handle
        return handle

    def pop(self, ptr: Any) -> Any:
        return from_handle(self._items.pop(ptr))

    def get(self, ptr: Any) -> Any:
        """The object of a handle still held by C."""
        return from_handle(self._items[ptr])

    def __len__(self) -> int:
        return len(self._items)


handles = Handles()
