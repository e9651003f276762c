"""Registries (``pgf_registry``): registrations, lookups and dispatch."""

from __future__ import annotations

from typing import Any

from .._native import ffi, lib
from .base import NULL, OK, PgfError, ensure
from .trampolines import CALL_DONE

#: default() -> the process's default registry (never freed).
default = lib.pgf_default_registry
#: free(registry): frees a registry from :func:`new` (cannot fail).
free = lib.pgf_registry_free


def new() -> Any:
    """A new registry (OWNED: :func:`free` it); MemoryError if C cannot
    allocate one."""
    registry = lib.pgf_registry_new()
    if registry == NULL:
        raise MemoryError("cannot allocate a registry")
    return registry


def _method_arg(method: bytes | None) -> tuple[Any, int]:
    return (NULL, 0) if method is None else (method, len(method))


def register(registry: Any, svc: bytes, method: bytes | None, kind: int, handler_fn: Any,
             data: Any, release_fn: Any) -> None:
    """Registers a handler function for a service (``method`` None) or a
    method, of a PGF_KIND_* (with flags); PgfError (PGF_EEXIST if taken)."""
    raw_method, method_len = _method_arg(method)
    ensure(lib.pgf_registry_register(registry, svc, len(svc), raw_method, method_len, kind,
                                     handler_fn, data, release_fn),
           "pgf_registry_register")


def register_method(registry: Any, svc: bytes, method: bytes, handler_fn: Any, data: Any,
                    release_fn: Any) -> None:
    """Registers a unary handler function for one method."""
    ensure(lib.pgf_registry_register_method(registry, svc, len(svc), method, len(method),
                                            handler_fn, data, release_fn),
           "pgf_registry_register_method")


def register_service(registry: Any, svc: bytes, handler_fn: Any, data: Any,
                     release_fn: Any) -> None:
    """Registers a unary handler function for every method of a service."""
    ensure(lib.pgf_registry_register_service(registry, svc, len(svc), handler_fn, data,
                                             release_fn),
           "pgf_registry_register_service")


def unregister_service(registry: Any, svc: bytes) -> None:
    ensure(lib.pgf_registry_unregister_service(registry, svc, len(svc)),
           "pgf_registry_unregister_service")


def unregister_method(registry: Any, svc: bytes, method: bytes) -> None:
    ensure(lib.pgf_registry_unregister_method(registry, svc, len(svc), method, len(method)),
           "pgf_registry_unregister_method")


def has_service(registry: Any, svc: bytes) -> bool:
    return bool(lib.pgf_registry_has_service(registry, svc, len(svc)))


def has_method(registry: Any, svc: bytes, method: bytes) -> bool:
    return bool(lib.pgf_registry_has_method(registry, svc, len(svc), method, len(method)))


def method_kind(registry: Any, svc: bytes, method: bytes) -> int:
    """The PGF_KIND_* a call to the method is served as; negative (a PGF_E*
    code) if no handler would take it."""
    return int(lib.pgf_registry_method_kind(registry, svc, len(svc), method, len(method)))


def service_names(registry: Any) -> list[bytes]:
    """The registered service names."""
    while True:
        count = lib.pgf_registry_list_services(registry, NULL, 0)
        names = ffi.new("pgf_name *[]", max(count, 1))
        total = lib.pgf_registry_list_services(registry, names, count)
        result = [bytes(ffi.string(lib.pgf_name_str(names[i])))
                  for i in range(min(total, count))]
        for i in range(min(total, count)):
            lib.pgf_name_unref(names[i])
        if total <= count:
            return result


def dispatch(registry: Any, call: Any) -> None:
    """Runs the call's handler and waits until the call is finished;
    PgfError if no handler took it (the call is left unfinished then)."""
    rc = lib.pgf_dispatch(registry, call)
    if rc != OK:  # ensure(), inline: once per call made from Python
        raise PgfError(rc, "pgf_dispatch")


def dispatch_async(registry: Any, call: Any, handle: Any) -> None:
    """Starts the call's handler; the call-done trampoline gets ``handle``
    once the call is finished.  PgfError if it did not start."""
    ensure(lib.pgf_dispatch_async(registry, call, CALL_DONE, handle), "pgf_dispatch_async")
