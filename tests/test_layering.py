"""The package's layers, read from its source with ``ast``: only the binding
package touches cffi's ``lib`` and ``ffi``."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pygrpc_ffi"
BINDING = PACKAGE / "_binding"
CFFI_NAMES = {"lib", "ffi"}


def _modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _cffi_uses(tree: ast.AST) -> list[str]:
    """Where a module imports the cffi module or names ``lib``/``ffi``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = {alias.name for alias in node.names}
            if (node.module or "").split(".")[-1] == "_native" or "_native" in names:
                found.append(f"line {node.lineno}: imports _native")
        elif isinstance(node, ast.Import):
            if any(alias.name.split(".")[-1] == "_native" for alias in node.names):
                found.append(f"line {node.lineno}: imports _native")
        elif isinstance(node, ast.Name) and node.id in CFFI_NAMES:
            found.append(f"line {node.lineno}: uses {node.id}")
        elif isinstance(node, ast.arg) and node.arg in CFFI_NAMES:
            found.append(f"line {node.lineno}: binds {node.arg}")
    return found


def test_the_modules_are_found() -> None:
    names = {path.relative_to(PACKAGE).as_posix() for path in _modules()}
    assert {"__init__.py", "_binding/base.py", "testing/__init__.py"} <= names


def test_only_the_binding_package_touches_lib_and_ffi() -> None:
    offenders = {}
    for path in _modules():
        if BINDING in path.parents:
            continue
        uses = _cffi_uses(ast.parse(path.read_text(), str(path)))
        if uses:
            offenders[path.relative_to(PACKAGE).as_posix()] = uses
    assert offenders == {}


def test_the_binding_package_does_touch_them() -> None:
    """The check above sees uses where they are (it is not vacuous)."""
    uses = _cffi_uses(ast.parse((BINDING / "calls.py").read_text()))
    assert any("imports _native" in use for use in uses)
    assert any("uses lib" in use for use in uses)
