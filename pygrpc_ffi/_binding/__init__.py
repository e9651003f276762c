"""The binding to the C shim: the only code that touches cffi's ``lib`` and
``ffi``.

Thin wrappers grouped by ABI area (:mod:`.calls`, :mod:`.streams`,
:mod:`.registry`, :mod:`.metadata`, :mod:`.metrics`, :mod:`.fastpath`,
:mod:`.trampolines`).  Every status a C function returns is checked with
:func:`.base.ensure`, which raises :class:`.base.PgfError`, or is ignored by
a wrapper whose name ends in ``_quietly`` and that says why.  Wrappers of
functions that cannot fail are the C functions themselves (no cost on the
per-call path).  ``build.py`` builds the cffi module; the ``*.c`` files here
are the C it compiles with the CPython API (the per-call fast path).
"""

from .base import PgfError, ensure

__all__ = ["PgfError", "ensure"]
