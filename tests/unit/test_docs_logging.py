"""docs/logging.md: its block runs as written, and every logger it names is a module that
logs (issue 21, newcomer's path: a logging page with the logger names)."""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs_blocks import ROOT, one_run_by

PAGE = ROOT / "docs" / "logging.md"


@pytest.fixture
def restored_levels() -> Iterator[None]:
    names = ("adapter", "adapter.protocol.flows")
    before = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers


def test_the_debug_block_runs(request: pytest.FixtureRequest, restored_levels: None) -> None:
    block = one_run_by(request.node.nodeid)
    exec(compile(block.text, block.where, "exec"), {})  # noqa: S102 - the page's own code
    assert logging.getLogger("adapter.web._login").isEnabledFor(logging.INFO)
    assert logging.getLogger("adapter.protocol.flows").isEnabledFor(logging.DEBUG)


def test_every_logger_named_is_a_module_that_logs() -> None:
    table = PAGE.read_text().split("## What each logger says", 1)[1]
    names = re.findall(r"^\| `(adapter[\w.]*)`(?:, `(adapter[\w.]*)`)?", table, re.MULTILINE)
    named = {name for pair in names for name in pair if name}
    assert len(named) > 10
    for name in sorted(named):
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"docs/logging.md names {name}: no such module"
        assert spec.origin is not None
        source = Path(spec.origin).read_text()
        assert "getLogger(" in source, f"{name} does not log"
