"""Wires the C shim (csrc/) into the cffi extension module pygrpc_ffi._native,
which only the binding package (this folder) imports.

The shim itself is built first by setup.py (build_ext) as libpygrpc_ffi.so, the
one shared library that both this module and C/C++ hosts link, so a process
has exactly one registry.  The cdef is derived from the public header.
"""

from __future__ import annotations

import pathlib
import re
import sys

from cffi import FFI

BINDING = pathlib.Path(__file__).resolve().parent
PACKAGE = BINDING.parent
ROOT = PACKAGE.parent
CSRC = ROOT / "csrc"
PYSRC = BINDING  # the C compiled into this module, with the CPython API (*.c, *.h)

# Python trampolines called from C (no ffi.callback per call).
TRAMPOLINES = """
extern "Python" int _pgf_py_handle(void *, pgf_call *);
extern "Python" void _pgf_py_release_handler(void *);
extern "Python" void _pgf_py_release_buffer(void *);
extern "Python" void _pgf_py_call_done(pgf_call *, void *);
extern "Python" void _pgf_py_cancel(pgf_call *, void *);
extern "Python" void _pgf_py_stream_event(pgf_call *, int, void *);
extern "Python" void _pgf_py_read_done(pgf_call *, int, pgf_message *, void *);
extern "Python" void _pgf_py_write_done(pgf_call *, int, void *);
extern "Python" void _pgf_py_enter_thread(void);
"""


def cdef_from_header(text: str) -> str:
    """Turns the public header into a cdef: no comments, no preprocessor
    lines, integer #defines resolved by the compiler (``...``)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = text.replace("\\\n", " ")  # continued #define lines
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        define = re.match(r"#define\s+(PGF_\w+)\s+\S", stripped)
        if define and define.group(1) == "PGF_API":
            continue
        if define:
            lines.append(f"#define {define.group(1)} ...")
        elif stripped.startswith("#") or stripped in ('extern "C" {', "}"):
            continue
        else:
            lines.append(re.sub(r"\b(PGF_API|static)\s+", "", line))
    return "\n".join(lines)


# Private helpers for the per-call path: each cffi call drops and retakes the
# GIL, so the request view is read in one crossing, and an answer is set and
# finished in one.
HELPERS_CDEF = """
typedef struct { const uint8_t *data; size_t len; } _pgf_bytes;
typedef struct { const uint8_t *data; size_t len; pgf_message *msg; } _pgf_request;
_pgf_request _pgf_request_of(const pgf_call *call);
_pgf_bytes _pgf_message_bytes(const pgf_message *msg);
void _pgf_message_unref_with(pgf_message *msg, void *unused);
int _pgf_finish_ok(pgf_call *call, const uint8_t *data, size_t len,
                   pgf_release_fn release, void *ctx);
int _pgf_finish_copy(pgf_call *call, const char *data, size_t len);
void _pgf_handle(void *handler_data, pgf_call *call);
"""
HELPERS_SOURCE = """
#include <stdlib.h>
#include <string.h>
#include "pygrpc_ffi.h"
typedef struct { const uint8_t *data; size_t len; } _pgf_bytes;
typedef struct { const uint8_t *data; size_t len; pgf_message *msg; } _pgf_request;
/* The request's bytes and a new reference to its message (NULL when the
 * host lent the bytes: then they must be copied). */
static _pgf_request _pgf_request_of(const pgf_call *call) {
    _pgf_request r;
    pgf_call_request(call, &r.data, &r.len);
    r.msg = pgf_call_request_message(call);
    return r;
}
static _pgf_bytes _pgf_message_bytes(const pgf_message *msg) {
    _pgf_bytes b;
    b.data = pgf_message_data(msg, &b.len);
    return b;
}
/* ffi.gc calls its destructor with the collected pointer: this one drops
 * the message bound to it with functools.partial instead. */
static void _pgf_message_unref_with(pgf_message *msg, void *unused) {
    (void)unused;
    pgf_message_unref(msg);
}
/* Sets the response (if any) and finishes the call OK; if the response
 * cannot be kept (it is released then), the call fails instead. */
static int _pgf_finish_ok(pgf_call *call, const uint8_t *data, size_t len,
                          pgf_release_fn release, void *ctx) {
    if (release != NULL) {
        int rc = pgf_call_set_response(call, data, len, release, ctx);
        if (rc != PGF_OK) {
            static const char msg[] = "cannot keep the response";
            pgf_call_reset_response(call);
            return pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, msg,
                                   sizeof(msg) - 1);
        }
    }
    return pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
}
/* Finishes the call OK with a copy of data[0..len) as the response (small
 * answers: no release has to come back into Python later). */
static int _pgf_finish_copy(pgf_call *call, const char *data, size_t len) {
    if (len != 0 &&
        pgf_call_set_response_copy(call, (const uint8_t *)data, len) != PGF_OK) {
        static const char msg[] = "out of memory";
        pgf_call_reset_response(call);
        return pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, msg,
                               sizeof(msg) - 1);
    }
    return pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
}
/* The handler function of every Python registration.  The trampoline returns
 * 1 once the call is finished or in Python's hands (async); if Python fails
 * anywhere, even before the trampoline's first line (a RecursionError when
 * handlers nest calls without bound), cffi returns 0 and the call still
 * ends, here, with INTERNAL: pgf_dispatch never waits forever. */
static int _pgf_py_handle(void *, pgf_call *);
static void _pgf_handle(void *handler_data, pgf_call *call) {
    if (_pgf_py_handle(handler_data, call) != 1 && !pgf_call_is_finished(call)) {
        static const char msg[] = "Internal server error";
        pgf_call_reset_response(call);
        pgf_call_finish(call, PGF_STATUS_INTERNAL, msg, sizeof(msg) - 1);
    }
}
static void _pgf_py_release_handler(void *);
static void _pgf_py_enter_thread(void);
#include "unary.c"
#include "stream_io.c"
#include "loop_queue.c"
"""

# The unary fast path needs the buffer protocol of the limited API, which
# Python 3.11 added: an abi3 module for 3.11 and later, a version-specific one
# for 3.10 (setup.py tags the wheel to match).
if sys.version_info >= (3, 11):
    LIMITED_API: dict[str, object] = {"define_macros": [("Py_LIMITED_API", "0x030B0000")]}
else:
    LIMITED_API = {"py_limited_api": False}

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header((CSRC / "pygrpc_ffi.h").read_text()))
ffibuilder.cdef(TRAMPOLINES)
ffibuilder.cdef(HELPERS_CDEF)
ffibuilder.cdef(cdef_from_header((PYSRC / "unary.h").read_text()))
ffibuilder.cdef(cdef_from_header((PYSRC / "stream_io.h").read_text()))
ffibuilder.cdef(cdef_from_header((PYSRC / "loop_queue.h").read_text()))
ffibuilder.set_source(
    "pygrpc_ffi._native",
    HELPERS_SOURCE,
    include_dirs=[str(CSRC), str(PYSRC)],
    depends=[str(path) for path in sorted(PYSRC.iterdir()) if path.suffix in (".c", ".h")],
    library_dirs=[str(PACKAGE)],
    libraries=["pygrpc_ffi"],
    extra_link_args=["-Wl,-rpath,$ORIGIN"],
    **LIMITED_API,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "cffi"), verbose=False)
