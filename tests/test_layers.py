"""The package's layers stay acyclic: a module imports its own layer or lower ones, never a higher one.

Every import counts: module-level and function-local ones, relative ones resolved. The table below places
each top-level module and subpackage of ``compresskit`` in a layer (top to bottom); a module that is in no
layer fails the test, so a new one is placed on purpose. A second test forbids module-level import cycles
between subpackages (and top-level modules): those break at import time, whichever is imported first.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "compresskit"

LAYERS = [  # top to bottom: (layer, the first name after ``compresskit.`` of its modules)
    ("cli", {"cli", "cli_errors", "cli_measure", "cli_search", "__main__", "docs"}),
    ("api", {"api", "runner", "recipe", "generate", "__init__", "recipe_search"}),  # recipe_search's trials are api.run's
    ("bench", {"bench"}),
    ("passes", {"passes", "registry"}),
    ("train/runtimes", {"train", "runtimes"}),
    ("models", {"models", "grid"}),
    ("metrics", {"metrics"}),
    ("data/text", {"data", "text"}),
    ("core", {"errors", "config_errors", "cache", "diskspace", "hardware", "threads", "lock", "forking", "lookup", "model_files",
              "artifact"}),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}

# Upward imports that are known and owned: each pair must still occur (a fixed one fails the test until it
# is removed here), so this list only shrinks.
ALLOWED_UPWARD: set[tuple[str, str]] = set()  # a deliberate upward import would be listed here, with why


@dataclass(frozen=True)
class Import:
    importer: str  # module name, e.g. compresskit.metrics.evaluate
    imported: str
    where: str  # path:line
    local: bool  # inside a function
    type_only: bool  # under ``if TYPE_CHECKING:`` (never executed)
    names: tuple[str, ...]  # the names a ``from ... import`` takes


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` (compresskit.x.y) is a module or package of the source tree."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> list[Import]:
    """Every import of compresskit's own modules in the file ``path``."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    return parse_imports(path.read_text("utf-8"), me, package, str(path.relative_to(PACKAGE.parent)))


def parse_imports(source: str, me: str, package: str, label: str) -> list[Import]:
    """The imports of compresskit's own modules in ``source`` (module ``me`` of ``package``), relative ones
    resolved; ``from pkg import mod`` counts as importing ``pkg.mod``."""
    found: list[Import] = []

    def visit(node: ast.AST, local: bool, type_only: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, local, True)
            for child in node.orelse:
                visit(child, local, type_only)
            return
        where = f"{label}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "compresskit":
                    found.append(Import(me, alias.name, where, local, type_only, ()))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source.split(".")[0] == "compresskit":
                names = tuple(alias.name for alias in node.names)
                submodules = [f"{source}.{name}" for name in names if _is_module(f"{source}.{name}")]
                for target in submodules or [source]:
                    found.append(Import(me, target, where, local, type_only, names))
        for child in ast.iter_child_nodes(node):
            visit(child, local, type_only)

    visit(ast.parse(source, label), False, False)
    return found


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) if "zoo" not in path.parts for imp in imports_of(path)]


def unit(module: str) -> str:
    """The first name after ``compresskit.`` (a subpackage or top-level module); the root package is __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int:
    return RANK[unit(module)]


def upward(imp: Import) -> bool:
    if imp.imported == "compresskit" and imp.names == ("__version__",):
        return False  # the root package's version string: Python loads the root before any submodule
    return layer(imp.imported) < layer(imp.importer)


def test_every_module_has_a_layer():
    modules = {module_name(p) for p in PACKAGE.rglob("*.py") if "zoo" not in p.parts}
    missing = sorted(m for m in modules if unit(m) not in RANK)
    assert not missing, f"put these modules in a layer of tests/test_layers.py LAYERS: {missing}"


def test_no_module_imports_a_higher_layer():
    names = {rank: name for rank, (name, _) in enumerate(LAYERS)}
    found = {(imp.importer, imp.imported): imp for imp in all_imports() if upward(imp)}
    violations = [f"{imp.where}: {imp.importer} ({names[layer(imp.importer)]}) -> {imp.imported} "
                  f"({names[layer(imp.imported)]}){' [function-local]' if imp.local else ''}"
                  for pair, imp in sorted(found.items()) if pair not in ALLOWED_UPWARD]
    assert not violations, ("imports that go up a layer (move the code to the layer that owns it):\n"
                            + "\n".join(violations))
    stale = sorted(ALLOWED_UPWARD - set(found))
    assert not stale, f"fixed: remove these pairs from ALLOWED_UPWARD in tests/test_layers.py: {stale}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one node (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    cycles = []
    for component in components:  # a shortest way back to the start, through the component only
        members, start = set(component), min(component)
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            nxt = sorted(edges[path[-1]] & members)
            if start in nxt:
                cycles.append([*path, start])
                break
            for n in nxt:
                if n not in seen:
                    seen.add(n)
                    paths.append([*path, n])
    return cycles


def test_no_import_cycle_between_subpackages_at_module_level():
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        if imp.local or imp.type_only or imp.imported == "compresskit":
            continue
        a, b = unit(imp.importer), unit(imp.imported)
        if a != b and a != "__init__":
            edges.setdefault(a, set()).add(b)
    cycles = _cycles(edges)
    assert not cycles, "module-level import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_local_relative_and_submodule_imports():
    """The parser itself: a function-local relative import of a submodule is found, resolved and called upward."""
    source = "from ..errors import ModelError\n\ndef f():\n    from ..models import sampling\n"
    found = parse_imports(source, "compresskit.metrics.probe", "compresskit.metrics", "probe.py")
    assert [(i.imported, i.local) for i in found] == [("compresskit.errors", False), ("compresskit.models.sampling", True)]
    assert [upward(i) for i in found] == [False, True]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_every_function_local_import_of_the_package_says_why():
    """Imports of compresskit's own modules belong at the top of the module; one inside a function is kept only for
    a reason (start-up time, a heavy backend, a real cycle) written beside it or on the line above."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "zoo" in path.parts:
            continue
        lines = path.read_text("utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("compresskit"))):
                    continue
                nearby = " ".join(lines[max(0, node.lineno - 2):(node.end_lineno or node.lineno)])
                if "#" not in nearby:
                    unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not unexplained, "function-local imports without a reason (move them to the top, or say why):\n" + \
        "\n".join(sorted(set(unexplained)))
