"""The package keeps its layers (docs/architecture.md): each module imports only from its own
layer and the ones below, so the map stays true as modules are added; and no module imports
itself back round a circle, even for type checking only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "adapter"
# What each layer must never import (at module level or inside functions).
FORBIDDEN = {
    "jose": ("adapter.config", "adapter.keys", "adapter.protocol", "adapter.web"),
    "errors": ("adapter.config", "adapter.keys", "adapter.protocol", "adapter.web"),
    "config": ("adapter.keys", "adapter.protocol", "adapter.web", "adapter.stores"),
    "keys": ("adapter.protocol", "adapter.web", "adapter.stores"),
    "protocol": ("adapter.web", "adapter.stores"),
    "stores": ("adapter.web",),
    "web": (),
    # On the shells and everything below them; the command and the test helpers sit beside.
    "integrations": ("adapter.cli", "adapter.testing"),
}
TOP = ("adapter.asgi", "adapter.wsgi", "adapter.cli", "adapter.testing", "adapter.metrics")
# The framework integrations: imported by nothing in the package outside them.
INTEGRATIONS = "adapter.integrations"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """What ``path`` imports, as (module, names taken from it): at module level, inside
    functions and under ``if TYPE_CHECKING:`` alike, relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{module}" if module else base
            found.append((module, [alias.name for alias in node.names]))
    return [(m, names) for m, names in found if m == "adapter" or m.startswith("adapter.")]


def imported(path: Path) -> set[str]:
    """Every adapter name ``path`` imports, as ``module`` and ``module.name``."""
    return {
        full
        for module, names in imports(path)
        for full in (module, *(f"{module}.{name}" for name in names))
    }


def imported_modules(path: Path) -> set[str]:
    """The adapter modules ``path`` imports: ``from package import module`` counts as the
    module, ``from module import name`` as the module. (Importing a module runs its package's
    ``__init__`` first; that alone is not counted as importing the package, or every package
    that imports its own modules would be a circle with each of them.)"""
    found: set[str] = set()
    for module, names in imports(path):
        submodules = {f"{module}.{name}" for name in names} & MODULES.keys()
        found |= submodules
        if not names or len(submodules) < len(names):  # a name that is not a module
            found.add(module)
    return found & MODULES.keys() - {module_name(path)}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_downwards(layer: str) -> None:
    paths = [p for p in PACKAGE.rglob("*.py") if layer_of(p) == layer]
    assert paths, f"no modules in layer {layer}"
    above = () if layer == "integrations" else (*TOP, INTEGRATIONS)
    broken = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in paths
        for name in imported(path)
        if name.startswith(FORBIDDEN[layer] + above)
    }
    assert not broken, sorted(broken)


def test_only_the_integrations_import_the_integrations() -> None:
    """The shells, the command and the test helpers included: a framework's integration is
    something an app imports, never the adapter itself."""
    broken = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in MODULES.values()
        if layer_of(path) != "integrations"
        for name in imported(path)
        if name == INTEGRATIONS or name.startswith(f"{INTEGRATIONS}.")
    }
    assert not broken, sorted(broken)


def test_the_integrations_package_imports_nothing() -> None:
    """``adapter.integrations`` itself is a docstring: importing one integration loads no
    other framework."""
    tree = ast.parse((PACKAGE / "integrations" / "__init__.py").read_text())
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not found, [ast.unparse(n) for n in found]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other round a circle (each group sorted)."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
        reach[start] = seen
    groups = {
        tuple(sorted(n for n in reach[name] if name in reach[n]))
        for name in graph
        if name in reach[name]
    }
    return sorted(list(group) for group in groups)


def test_no_module_imports_itself_round_a_circle() -> None:
    """TYPE_CHECKING and function-level imports count: a route module that names the core for
    its annotations, or an idiom that imports its helper lazily while the helper imports it,
    is a circle all the same (the route modules take web._context.RouteContext instead)."""
    graph = {name: imported_modules(path) for name, path in MODULES.items()}
    found = [
        sorted(f"{a} imports {b}" for a in group for b in graph[a] if b in group)
        for group in circles(graph)
    ]
    assert not found, found


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": set(), "f": {"f"}}
    assert circles(graph) == [["a", "b", "c"], ["f"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_whatever_their_form() -> None:
    """Imports under TYPE_CHECKING and inside functions are seen (no circle hides in one)."""
    source = PACKAGE / "web" / "_login.py"
    names = imported(source)
    assert "adapter.web._context.RouteContext" in names
    assert "adapter.web._context" in imported_modules(source)
    assert "adapter.web.core" not in imported_modules(source)
    django = PACKAGE / "integrations" / "django"
    backend = imported_modules(django / "backend.py")
    assert "adapter.integrations.django" not in backend
    assert "adapter.integrations.django.settings" in backend
    lazily = imported_modules(django / "__init__.py")
    assert "adapter.integrations.django.backend" in lazily


def test_the_top_level_stays_small() -> None:
    """Past ~20 modules, group by layer instead of letting the flat list grow (DESIGN.md)."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 20, modules
