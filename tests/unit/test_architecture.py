"""The package's shape, read from the source: one-way layers, no cycles, small modules and functions.

The layer order is the one ``ARCHITECTURE.md`` draws. A package may import
itself and any package in a lower layer, never one in its own layer or above
(not even inside a function: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "splittracer"

# Top to bottom. User code (``examples``) and ``__main__`` sit above everything, then the root
# ``splittracer/__init__.py``: the public API, which loads the layers below it lazily.
LAYERS: list[set[str]] = [
    {"cli"},
    {"experiment"},
    {"controller"},
    {"deploy", "lab", "report"},
    {"devices"},
    {"workspace"},
    {"manifest"},
    {"builtin"},
    {"placed"},
    {"participant", "pacing"},
    {"roles"},
    {"plan"},
    {"tasks"},
    {"split"},
    {"wire"},
    {"models"},
    {"metrics"},
    {"config"},
    {"units", "clock", "version", "environment", "lazy"},
    {"errors"},
]
USER_CODE = {"__main__", "examples"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _layer_of(package: str) -> int:
    if package in USER_CODE:
        return -2
    if package == "<root>":
        return -1
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS and ARCHITECTURE.md")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, modules: set[str]) -> set[str]:
    """Every ``splittracer`` module ``module`` imports, resolved to absolute names."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            # ``from pkg import module`` depends on the module, not on what else ``pkg`` exports
            targets.update(submodules if submodules & modules else {target})
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return {t for t in targets if t == "splittracer" or t.startswith("splittracer.")}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _package_edges() -> dict[str, set[tuple[str, str]]]:
    """package -> {(importing module, imported module)} for imports that leave the package."""
    modules = _modules()
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for module, path in modules.items():
        for target in _imported(module, path, set(modules)):
            if target not in modules:
                continue  # ``from pkg import name`` where name is not a module
            source_pkg, target_pkg = _package_of(module), _package_of(target)
            if source_pkg != target_pkg:
                edges[source_pkg].add((module, target))
    return edges


def test_imports_flow_down_the_layers():
    upward = []
    for source_pkg, pairs in _package_edges().items():
        for module, target in sorted(pairs):
            if _layer_of(_package_of(target)) <= _layer_of(source_pkg):
                upward.append(f"{module} imports {target}")
    assert not upward, "imports against the layer order (see ARCHITECTURE.md):\n" + "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph = {pkg: {_package_of(t) for _, t in pairs} for pkg, pairs in _package_edges().items()}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == trail[0]:
                cycles.append(" -> ".join([*trail, nxt]))
            elif nxt not in trail and nxt > trail[0]:  # each cycle reported once, from its smallest name
                visit(nxt, [*trail, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_no_module_over_the_limit():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def test_no_function_over_the_limit():
    long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_layer_exists_and_the_checker_sees_imports():
    """Guards the checker itself: a package renamed away or a parser that sees nothing passes vacuously."""
    packages = {_package_of(m) for m in _modules()}
    for layer in LAYERS:
        for package in layer:
            assert package in packages, f"{package} is listed in LAYERS but does not exist"
    edges = _package_edges()
    assert ("splittracer.controller.run", "splittracer.metrics.store") in edges["controller"]


def test_builtin_roles_use_the_public_context():
    """Built-in roles are written as a user's would be: against ``Context``, not the runtime's class."""
    modules = _modules()
    package = {n: p for n, p in modules.items() if n.split(".")[:2] == ["splittracer", "builtin"]}
    assert len(package) > 1, "splittracer.builtin is a package of several modules"
    for name, path in package.items():
        private = sorted(t for t in _imported(name, path, set(modules)) if ".participant" in t)
        assert not private, f"{name} imports the participant runtime: {private}"
