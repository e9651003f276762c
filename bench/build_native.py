"""Builds the bench-only cffi module ``_pgf_bench`` into build/bench/.

It holds the C dispatch loops of bench/native.c and their no-op
``extern "Python"`` callback, and links the package's one shim library,
pygrpc_ffi/libpygrpc_ffi.so, so its loops dispatch into the very registry
that ``pygrpc_ffi.default_service()`` registers into.
"""

from __future__ import annotations

import pathlib
import sys

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
LIBDIR = ROOT / "pygrpc_ffi"

CDEF = """
typedef struct pgf_call pgf_call;
extern "Python" void _bench_noop(void *, pgf_call *);
int64_t bench_run(int kind, const char *path, size_t payload_len,
                  long calls, long warmup, int threads, long *errors);
int bench_register_c(const char *service, int with_callback);
int64_t bench_stream(const char *path, size_t payload_len, long messages);
int64_t bench_pipeline(const char *path, size_t payload_len, long calls, long depth,
                       long *errors);
int64_t pgf_live_count(int kind);
"""


def build() -> pathlib.Path:
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        "_pgf_bench",
        "#define _GNU_SOURCE 1\n" + (ROOT / "bench" / "native.c").read_text(),
        include_dirs=[str(ROOT / "csrc")],
        library_dirs=[str(LIBDIR)],
        libraries=["pygrpc_ffi", "pthread"],
        extra_compile_args=["-O2", "-g", "-fno-omit-frame-pointer"],
        extra_link_args=[f"-Wl,-rpath,{LIBDIR}"],
    )
    OUT.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(ffi.compile(tmpdir=str(OUT), verbose=False))


if __name__ == "__main__":
    print(build())
    sys.exit(0)
