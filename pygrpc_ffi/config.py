"""Where the installed package keeps what C and C++ builds need.

Like ``numpy.get_include()`` and ``python3-config``: the header, the shim
(``libpygrpc_ffi.so``, the one library the cffi module and every host link),
a pkg-config file and a CMake package config, all inside the package
directory, so they follow the wheel wherever pip installed it::

    cc $(python -m pygrpc_ffi config --cflags) host.c $(python -m pygrpc_ffi config --libs)
    PKG_CONFIG_PATH=$(python -m pygrpc_ffi config --pkgconfigdir) pkg-config --libs pygrpc_ffi
    cmake -Dpygrpc_ffi_DIR=$(python -m pygrpc_ffi config --cmakedir) ...
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from ._binding import base

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
LIBRARY_NAME = "libpygrpc_ffi.so"


def get_include() -> str:
    """The directory holding ``pygrpc_ffi.h``."""
    installed = PACKAGE_DIR / "include"
    if (installed / "pygrpc_ffi.h").is_file():
        return str(installed)
    source = PACKAGE_DIR.parent / "csrc"  # a source checkout built by make only
    if (source / "pygrpc_ffi.h").is_file():
        return str(source)
    return str(installed)


def get_library_dir() -> str:
    """The directory holding ``libpygrpc_ffi.so`` (the package directory)."""
    return str(PACKAGE_DIR)


def get_library() -> str:
    """The path of ``libpygrpc_ffi.so``."""
    return str(PACKAGE_DIR / LIBRARY_NAME)


def get_cmake_dir() -> str:
    """The directory of ``pygrpc_ffiConfig.cmake`` (for ``pygrpc_ffi_DIR``)."""
    return str(PACKAGE_DIR / "cmake")


def get_pkgconfig_dir() -> str:
    """The directory of ``pygrpc_ffi.pc`` (for ``PKG_CONFIG_PATH``)."""
    return str(PACKAGE_DIR / "pkgconfig")


def get_venv() -> str | None:
    """The virtual environment this package is installed in, if any: pass it
    to ``pgf_python_start`` (a NULL venv means this one, see docs/embedding.md)."""
    return sys.prefix if sys.prefix != sys.base_prefix else None


def cflags() -> str:
    return f"-I{get_include()}"


def libs() -> str:
    libdir = get_library_dir()
    return f"-L{libdir} -Wl,-rpath,{libdir} -lpygrpc_ffi"


def config_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pygrpc-ffi config",
        description="Print the flags and paths to build C/C++ hosts against this package "
        "(several options print one line each, in the order given).")
    outputs = {
        "cflags": cflags, "libs": libs, "includedir": get_include,
        "libdir": get_library_dir, "library": get_library, "cmakedir": get_cmake_dir,
        "pkgconfigdir": get_pkgconfig_dir, "prefix": lambda: str(PACKAGE_DIR.parent),
        "venv": lambda: get_venv() or "", "version": library_version,
    }
    helps = {
        "cflags": "compiler flags (-I...)", "libs": "linker flags, with an rpath to the shim",
        "includedir": "the directory of pygrpc_ffi.h", "libdir": "the directory of the shim",
        "library": "the shim's path", "cmakedir": "for -Dpygrpc_ffi_DIR=",
        "pkgconfigdir": "for PKG_CONFIG_PATH",
        "prefix": "for CMAKE_PREFIX_PATH (find_package looks in <prefix>/pygrpc_ffi/cmake)",
        "venv": "the venv this package is installed in (empty if none)",
        "version": "the package's (and the C library's) version",
    }
    for name in outputs:
        parser.add_argument(f"--{name}", dest="order", action="append_const", const=name,
                            help=helps[name])
    args = parser.parse_args(argv)
    if not args.order:
        parser.print_help()
        return 2
    # python3-config prints all flags on one line; so do --cflags --libs here.
    flags = [n for n in args.order if n in ("cflags", "libs")]
    if flags and len(flags) == len(args.order):
        print(" ".join(outputs[n]() for n in flags))
        return 0
    for name in args.order:
        print(outputs[name]())
    return 0


def library_version() -> str:
    """The version of the loaded C library (PGF_VERSION_* of pygrpc_ffi.h,
    which setup.py also reads for the distribution's version)."""
    number = base.version_number()
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
