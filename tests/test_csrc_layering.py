"""The C shim's files call each other in layers, without circles
(tests/c/check_layering.py, which reads the layers from csrc/internal.h)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECK = ROOT / "tests" / "c" / "check_layering.py"

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("nm") is None,
                                reason="needs cc and nm")


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True,
                          text=True, timeout=300)


def test_csrc_has_no_cycle_and_keeps_its_layers() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr
    assert "no cycle" in result.stdout


def test_check_fails_on_a_cycle_and_on_an_upward_call(tmp_path: pathlib.Path) -> None:
    (tmp_path / "internal.h").write_text(
        "/* LAYERS (top first)\n *   upper.c\n *   lower.c\n * END LAYERS */\n")
    (tmp_path / "upper.c").write_text("void lower(void);\nvoid upper(void) { lower(); }\n")
    (tmp_path / "lower.c").write_text("void upper(void);\nvoid lower(void) { upper(); }\n")
    result = run_check("--csrc", str(tmp_path))
    assert result.returncode == 1
    assert "cycle among lower.c, upper.c" in result.stderr
    assert "lower.c calls upper.c, in a higher layer: upper" in result.stderr
