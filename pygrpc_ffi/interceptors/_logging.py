"""The logging filter that tags the package's error lines with the
intercepted call (method and call id, as in access-log lines)."""

from __future__ import annotations

import logging

from ._call import _current_call

_log = logging.getLogger("pygrpc_ffi")


class _CallIdFilter(logging.Filter):
    """Adds the method and call id of the intercepted call being handled to
    the package's error lines (tracebacks of INTERNAL errors), so they can
    be matched with access-log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            info = _current_call.get()
            if info is not None and not getattr(record, "call_id", None):
                record.call_id = info.call_id
                record.method = info.full_method
                text = f" [{info.full_method} call_id={info.call_id}]".replace("%", "%%")
                record.msg = f"{record.msg}{text}"
        return True


def install() -> None:
    """Tags the package's error lines from now on."""
    _log.addFilter(_CallIdFilter())
