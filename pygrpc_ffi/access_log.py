"""The access log: one structured line per RPC through Python's logging.

Off by default; ``pygrpc-ffi serve --access-log`` or
``service.add_interceptor(AccessLog())`` turns it on.  Each finished call
logs one INFO record on the ``pygrpc_ffi.access`` logger::

    method=/demo.Greeter/SayHello status=OK code=0 duration_ms=0.412
    peer=ipv4:127.0.0.1:53211 bytes_in=5 bytes_out=12 msgs_in=1 msgs_out=1
    call_id=1a2b-17

(one line), and the same fields as attributes of the record (``grpc_method``,
``grpc_code``, ``duration_ms``, ``peer``, ``bytes_in``, ``bytes_out``,
``call_id``, ...) for structured formatters.  Route it as any logger.  The
traceback logged for an INTERNAL error ends with ``[/pkg.Svc/M
call_id=...]``, the call id of its access-log line.
"""

from __future__ import annotations

import logging
from typing import TextIO

from .interceptors import Interceptor, ServerCall
from .service import GrpcService, default_service

__all__ = ["ACCESS_LOGGER", "AccessLog", "enable_access_log"]

ACCESS_LOGGER = "pygrpc_ffi.access"


class AccessLog(Interceptor):
    """Logs one line per finished call (see the module's documentation)."""

    needs_sizes = True

    def __init__(self, logger: logging.Logger | str = ACCESS_LOGGER,
                 level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def after(self, call: ServerCall) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        code = call.code
        fields = {
            "grpc_method": call.full_method,
            "grpc_status": code.name if code is not None else "UNKNOWN",
            "grpc_code": int(code) if code is not None else 2,
            "duration_ms": round(call.duration * 1000, 3),
            "peer": call.peer,
            "bytes_in": call.bytes_in,
            "bytes_out": call.bytes_out,
            "msgs_in": call.messages_in,
            "msgs_out": call.messages_out,
            "call_id": call.call_id,
        }
        self.logger.log(
            self.level,
            "method=%s status=%s code=%d duration_ms=%.3f peer=%s bytes_in=%d bytes_out=%d "
            "msgs_in=%d msgs_out=%d call_id=%s",
            fields["grpc_method"], fields["grpc_status"], fields["grpc_code"],
            fields["duration_ms"], fields["peer"], fields["bytes_in"], fields["bytes_out"],
            fields["msgs_in"], fields["msgs_out"], fields["call_id"], extra=fields)


def enable_access_log(service: object = None, stream: TextIO | None = None) -> AccessLog:
    """Adds an :class:`AccessLog` to ``service`` (default:
    :func:`~pygrpc_ffi.default_service`) and, if the access logger has no
    handler yet, sends its lines to ``stream`` (default: stderr)."""
    target = service if isinstance(service, GrpcService) else default_service()
    log = logging.getLogger(ACCESS_LOGGER)
    if not log.handlers:
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    access = AccessLog(log)
    target.add_interceptor(access)
    return access
