"""One version everywhere: the header's PGF_VERSION_* (the single source),
the loaded C library, the Python package and its distribution metadata."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re

from pygrpc_ffi._native import lib

import pygrpc_ffi

TESTS_DIR = pathlib.Path(__file__).resolve().parent
HEADER = TESTS_DIR.parent / "csrc" / "pygrpc_ffi.h"


def _macro(name: str) -> int:
    match = re.search(rf"#define\s+{name}\s+(\d+)", HEADER.read_text())
    assert match, name
    return int(match.group(1))


def test_versions_agree() -> None:
    header = ".".join(str(_macro(f"PGF_VERSION_{p}")) for p in ("MAJOR", "MINOR", "PATCH"))
    assert header == "0.4.0"
    number = lib.pgf_version_number()
    assert number == lib.PGF_VERSION_NUMBER == _macro("PGF_VERSION_MAJOR") * 10000 + \
        _macro("PGF_VERSION_MINOR") * 100 + _macro("PGF_VERSION_PATCH")
    assert pygrpc_ffi.__version__ == header
    assert importlib.metadata.version("pygrpc_ffi") == header


def test_abi_version_agrees() -> None:
    assert lib.pgf_abi_version() == lib.PGF_ABI_VERSION == _macro("PGF_ABI_VERSION") == 5
    assert pygrpc_ffi.ABI_VERSION == 5


def test_include_and_library_dirs() -> None:
    include = pygrpc_ffi.get_include()
    assert (TESTS_DIR.parent / "csrc" / "pygrpc_ffi.h").read_bytes() == \
        open(f"{include}/pygrpc_ffi.h", "rb").read()

    assert (pathlib.Path(pygrpc_ffi.get_library_dir()) / "libpygrpc_ffi.so").is_file()
