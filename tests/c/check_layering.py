#!/usr/bin/env python3
"""Checks that the C shim's files call each other without circles.

Compiles each csrc/*.c to an object file, reads the global symbols each
defines and uses with ``nm``, and draws the graph "file A calls file B"
(A uses a symbol that B defines).  Fails (exit status 1) if the graph has a
cycle, or if a call goes against the layers written between ``LAYERS`` and
``END LAYERS`` in csrc/internal.h (one line per layer, top first: a file
may call only files on lower lines), or if a file is missing from them.

    python3 tests/c/check_layering.py [--csrc DIR] [--graph]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]

# nm's letters for symbols an object defines (text, data, bss, read-only...).
DEFINED = set("TDBRVWGSCi")


def symbols(obj: pathlib.Path) -> tuple[set[str], set[str]]:
    """The global symbols obj defines and those it leaves undefined."""
    out = subprocess.run(["nm", "-P", str(obj)], check=True, capture_output=True,
                         text=True).stdout
    defined: set[str] = set()
    undefined: set[str] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in DEFINED:
            defined.add(name)
    return defined, undefined


def compile_objects(csrc: pathlib.Path, out: pathlib.Path) -> dict[str, pathlib.Path]:
    """Each csrc/*.c compiled on its own (no inlining across files)."""
    cc = shlex.split(os.environ.get("CC") or "cc")
    objects = {}
    for source in sorted(csrc.glob("*.c")):
        obj = out / (source.stem + ".o")
        subprocess.run([*cc, "-std=c99", "-O0", "-c", "-I", str(csrc), "-o", str(obj),
                        str(source)], check=True)
        objects[source.name] = obj
    return objects


def call_graph(objects: dict[str, pathlib.Path]) -> dict[str, dict[str, set[str]]]:
    """file -> {file it calls: the symbols it uses from it}."""
    table = {name: symbols(obj) for name, obj in objects.items()}
    owner = {sym: name for name, (defined, _) in table.items() for sym in defined}
    graph: dict[str, dict[str, set[str]]] = {name: {} for name in table}
    for name, (_, undefined) in table.items():
        for sym in undefined:
            target = owner.get(sym)
            if target is not None and target != name:
                graph[name].setdefault(target, set()).add(sym)
    return graph


def find_cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def read_layers(internal_h: pathlib.Path) -> list[list[str]] | None:
    """The files of each layer, top first, or None if the block is missing."""
    match = re.search(r"LAYERS \(top first\)\s*\n(.*?)\n\s*\*\s*END LAYERS",
                      internal_h.read_text(), re.S)
    if match is None:
        return None
    layers = []
    for line in match.group(1).splitlines():
        files = [f for f in line.strip().lstrip("*").split() if f.endswith(".c")]
        if files:
            layers.append(files)
    return layers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csrc", type=pathlib.Path, default=ROOT / "csrc")
    parser.add_argument("--graph", action="store_true", help="print every call")
    args = parser.parse_args()
    csrc = args.csrc.resolve()

    with tempfile.TemporaryDirectory() as tmp:
        graph = call_graph(compile_objects(csrc, pathlib.Path(tmp)))
    if args.graph:
        for name in sorted(graph):
            for target, syms in sorted(graph[name].items()):
                print(f"{name} -> {target}: {', '.join(sorted(syms))}")

    problems = []
    for component in find_cycles(graph):
        members = set(component)
        steps = [f"{a} -> {b} ({', '.join(sorted(syms))})"
                 for a in component for b, syms in sorted(graph[a].items()) if b in members]
        problems.append("cycle among " + ", ".join(component) + ", by these calls:\n    "
                        + "\n    ".join(steps))

    layers = read_layers(csrc / "internal.h")
    if layers is None:
        problems.append("csrc/internal.h has no LAYERS ... END LAYERS block")
    else:
        level = {}
        for depth, files in enumerate(layers):
            for name in files:
                if name in level:
                    problems.append(f"{name} is in two layers")
                level[name] = depth
        for name in sorted(set(graph) - set(level)):
            problems.append(f"{name} is in no layer of csrc/internal.h")
        for name in sorted(set(level) - set(graph)):
            problems.append(f"the layers name {name}, which does not exist")
        for name in sorted(graph):
            for target, syms in sorted(graph[name].items()):
                if name in level and target in level and level[target] <= level[name]:
                    where = "its own layer" if level[target] == level[name] else "a higher layer"
                    problems.append(f"{name} calls {target}, in {where}: "
                                    + ", ".join(sorted(syms)))

    for problem in problems:
        print(f"check_layering: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_layering: {len(graph)} files, "
          f"{sum(len(t) for t in graph.values())} calls between them, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
