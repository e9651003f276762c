"""gRPC health checking (``grpc.health.v1.Health``) in one call.

::

    from pygrpc_ffi.health import add_health

    health = add_health(service, {"my.Service": "SERVING"})
    health.set("my.Service", "NOT_SERVING")

``Check`` runs through the C path (grpcio-health-checking's own servicer,
registered like any generated servicer): the status of a known service, or
NOT_FOUND for an unknown one; the empty name is the server as a whole and is
SERVING unless set otherwise.  ``Watch`` is a server-streaming RPC and
answers UNIMPLEMENTED ("streaming is not supported yet") until the C ABI
carries streams.  Needs ``grpcio-health-checking``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpc_health.v1 import health as _health  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .service import GrpcService
from .servicer import ServicerTarget

__all__ = ["SERVICE_NAME", "HealthServicer", "add_health", "serving_status"]

#: The full name of the health service.
SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

ServingStatusLike = Any  # a HealthCheckResponse.ServingStatus value, its name, or a bool


def serving_status(status: ServingStatusLike) -> int:
    """A ``HealthCheckResponse.ServingStatus`` value from itself, its name
    (``"SERVING"``, ``"NOT_SERVING"``, ...) or a bool (True: SERVING)."""
    enum = health_pb2.HealthCheckResponse.ServingStatus
    if isinstance(status, bool):
        return int(health_pb2.HealthCheckResponse.SERVING if status
                   else health_pb2.HealthCheckResponse.NOT_SERVING)
    if isinstance(status, str):
        try:
            return int(enum.Value(status.upper()))
        except ValueError:
            raise ValueError(f"unknown serving status {status!r}; expected one of "
                             f"{', '.join(enum.keys())}") from None
    if isinstance(status, int) and status in enum.values():
        return status
    raise ValueError(f"unknown serving status {status!r}")


class HealthServicer(_health.HealthServicer):  # type: ignore[misc]
    """grpcio-health-checking's servicer; :meth:`set` also takes names and
    bools."""

    def set(self, service: str, status: ServingStatusLike) -> None:
        """Sets the serving status of ``service`` ("" is the whole server)."""
        super().set(service, serving_status(status))

    def status(self, service: str) -> int | None:
        """The serving status of ``service``, or None if it is unknown."""
        with self._lock:
            value = self._server_status.get(service)
        return None if value is None else int(value)


def add_health(service: GrpcService | None = None,
               statuses: Mapping[str, ServingStatusLike] | None = None) -> HealthServicer:
    """Registers ``grpc.health.v1.Health`` in ``service`` (default:
    :func:`~pygrpc_ffi.default_service`) with the given serving statuses
    (the whole server, "", is SERVING unless given), and returns the
    servicer, whose :meth:`~HealthServicer.set` changes them."""
    servicer = HealthServicer()
    for name, status in (statuses or {}).items():
        servicer.set(name, status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, ServicerTarget(service))
    return servicer
