"""What the C++ host imports when ``pygrpc-ffi serve`` has interceptors, an
access log, health or reflection: the user's module (``$PGF_SERVE_MODULE``),
then the interceptors (``$PGF_SERVE_INTERCEPTORS``, one ``module:attribute``
a line), the access log (``$PGF_SERVE_ACCESS_LOG``), reflection
(``$PGF_SERVE_REFLECTION``) and health (``$PGF_SERVE_HEALTH``) added to
:func:`~pygrpc_ffi.default_service`, the registry the host dispatches to."""

from __future__ import annotations

import importlib
import os

from .serve_options import (
    ENV_ACCESS_LOG,
    ENV_HEALTH,
    ENV_INTERCEPTORS,
    ENV_MODULE,
    ENV_REFLECTION,
    apply,
)
from .service import default_service


def _setup() -> None:
    module = os.environ.get(ENV_MODULE)
    if not module:
        raise RuntimeError(f"{__name__} needs ${ENV_MODULE}: the module of the handlers")
    importlib.import_module(module)
    specs = [line for line in os.environ.get(ENV_INTERCEPTORS, "").splitlines() if line]
    apply(default_service(), specs, bool(os.environ.get(ENV_ACCESS_LOG)),
          bool(os.environ.get(ENV_HEALTH)), bool(os.environ.get(ENV_REFLECTION)))


_setup()
