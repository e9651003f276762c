"""The package's layers, read from its source with ``ast``: only the binding
package touches cffi's ``lib`` and ``ffi``, lower layers never import upper
ones, and no module imports another that imports it back, at the top or
inside a function."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pygrpc_ffi"
BINDING = PACKAGE / "_binding"
CFFI_NAMES = {"lib", "ffi"}
#: Modules that import an optional third-party package (grpcio, its health and
#: reflection packages) at their top: imported inside the function that needs
#: them, so the core works without it.
OPTIONAL = {"pygrpc_ffi.grpcio_server", "pygrpc_ffi.health", "pygrpc_ffi.reflection"}
#: The layers, lowest first, by the first name below pygrpc_ffi ("" is the
#: package itself): a module imports modules of its own layer or lower ones.
LAYERS = [
    ("the binding to C", {"_binding"}),
    ("the handler API's types", {"status", "metadata", "errors", "response", "request",
                                 "handler"}),
    ("the runtime that runs handlers", {"_runtime"}),
    ("Python acting as a host", {"_host"}),
    ("grpcio contexts and servicer methods", {"context", "_servicer_methods", "typed"}),
    ("interceptors", {"interceptors"}),
    ("the service registry", {"service", "shutdown"}),
    ("grpcio compatibility and the testing kit", {"servicer", "grpcio_server", "health",
                                                  "reflection", "testing"}),
    ("observability", {"metrics_server", "metrics", "tracing", "access_log"}),
    ("serving", {"config", "serve_options", "serve_tls", "serve_setup", "serve_stop", "probe",
                 "parent_watch",
                 "cli", "__main__", ""}),
]


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


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> dict[str, bool]:
    """The package's modules ``path`` imports, each with whether it is
    imported at the module's top (else inside a function or class)."""
    tree = ast.parse(path.read_text(), str(path))
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    top = {id(node) for node in _module_level(tree)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join([*package[:len(package) - node.level + 1], node.module or ""])
            else:
                base = node.module or ""
            base = base.rstrip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                found[target] = found.get(target, False) or id(node) in top
    return found


def _module_level(node: ast.AST) -> list[ast.AST]:
    """The statements run when the module is imported (not in functions)."""
    found = []
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            found.append(child)
            found.extend(_module_level(child))
    return found


def _graph() -> dict[str, dict[str, bool]]:
    paths = {_module_name(path): path for path in _modules()}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_the_modules() -> None:
    graph = {name: set(imports) for name, imports in _graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_import_each_other_at_their_top() -> None:
    """Imports of the package's own modules inside functions hide the order
    of the layers; only modules of optional dependencies are imported so."""
    hidden = {f"{name} -> {target}" for name, imports in _graph().items()
              for target, at_top in imports.items() if not at_top and target not in OPTIONAL}
    assert hidden == set()


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next(i for i, (_, names) in enumerate(LAYERS) if top in names)


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        assert _layer(module) >= 0, module


def test_lower_layers_never_import_upper_ones() -> None:
    upward = {f"{name} ({LAYERS[_layer(name)][0]}) -> {target} ({LAYERS[_layer(target)][0]})"
              for name, imports in _graph().items() for target in imports
              if _layer(target) > _layer(name)}
    assert upward == set()
