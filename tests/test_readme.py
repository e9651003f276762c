"""The README's Python example runs as written, in a fresh interpreter."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.timeout(60)
def test_readme_handler_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(block for block in blocks if "service.call(" in block)
    result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
