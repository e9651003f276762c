"""The C++ host runs on jemalloc where the machine has it (scripts/setup.sh
installs it): gRPC frees most of its memory on another thread than the one
that allocated it, which glibc's malloc serialises on an arena lock."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
from streams_kit import UNARY_C, Host


def jemalloc_installed() -> bool:
    pkg_config = shutil.which("pkg-config")
    return pkg_config is not None and subprocess.run(
        [pkg_config, "--exists", "jemalloc"], check=False).returncode == 0


def test_the_host_allocates_with_jemalloc_and_serves() -> None:
    if not jemalloc_installed():
        pytest.skip("jemalloc's development files (libjemalloc-dev) are not installed")
    host = Host()
    try:
        maps = pathlib.Path(f"/proc/{host.process.pid}/maps").read_text()
        if "libasan" in maps:
            pytest.skip("a sanitizer build of the host keeps the sanitizer's allocator")
        assert "libjemalloc" in maps
        with host.channel() as channel:
            assert channel.unary_unary(UNARY_C)(b"payload", timeout=10) == b"payload"
    finally:
        assert host.stop() == 0
