"""The package keeps its layers (docs/architecture.md): each module imports only from its own
layer and the ones below, so the map stays true as modules are added."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "adapter"
# What each layer must never import (at module level or inside functions).
FORBIDDEN = {
    "jose": ("adapter.config", "adapter.keys", "adapter.protocol", "adapter.web"),
    "errors": ("adapter.config", "adapter.keys", "adapter.protocol", "adapter.web"),
    "config": ("adapter.protocol", "adapter.web", "adapter.stores"),
    "keys": ("adapter.protocol", "adapter.web", "adapter.stores"),
    "protocol": ("adapter.web", "adapter.stores"),
    "stores": ("adapter.web",),
    "web": (),
}
TOP = ("adapter.asgi", "adapter.wsgi", "adapter.cli", "adapter.testing", "adapter.metrics")
IDIOMS = ("adapter.starlette", "adapter.fastapi", "adapter.flask", "adapter.django")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("adapter")}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_downwards(layer: str) -> None:
    paths = [p for p in PACKAGE.rglob("*.py") if layer_of(p) == layer]
    assert paths, f"no modules in layer {layer}"
    broken = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in paths
        for name in imported(path)
        if name.startswith(FORBIDDEN[layer] + TOP + IDIOMS)
    }
    assert not broken, sorted(broken)


def test_the_top_level_stays_small() -> None:
    """Past ~20 modules, group by layer instead of letting the flat list grow (DESIGN.md)."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 20, modules
