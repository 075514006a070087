"""The documentation holds together (issue 21, items 1 and 2): README.md is a front page, every
page under docs/ is in the site's nav, the Python API page shows every public name, the site is
built from nothing on the network, and every fenced code block in README.md, CONTRIBUTING.md and
docs/ is run by a test or claimed as a fragment by a test that exists (``tests/docs_blocks.py``
says how). The blocks a unit test can run as written are run here; the others in
``tests/integration/test_readme.py`` and where their claims say.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest

import adapter
from tests.docs_blocks import NODE_ID, ROOT, Block, every_block, one_run_by, run_by

DOCS = ROOT / "docs"
MKDOCS = ROOT / "mkdocs.yml"
README_LIMIT = 150
ENTRY_INDENT_BELOW = 16  # the architecture tree: deeper lines continue a description


# Every block answers to a test ---------------------------------------------------------------


def test_every_block_is_run_or_claimed_as_a_fragment() -> None:
    unclaimed = [f"{b.where} ({b.language or 'plain'})" for b in every_block() if not b.claim]
    assert unclaimed == [], (
        "put <!-- run: tests/...py::test_x --> (the test reads the block with run_by) or "
        "<!-- fragment: covered by tests/...py::test_x --> on the line before each of these"
    )


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """The names of the test functions a test file defines at its top level."""
    tree = ast.parse(path.read_text())
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def function_source(path: Path, name: str) -> str:
    tree = ast.parse(text := path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(text, node) or ""


def missing_test(node_id: str) -> str | None:
    """Why ``node_id`` names no test, or None when it does."""
    path, _, name = node_id.partition("::")
    name, _, parameter = name.partition("[")
    if not (ROOT / path).is_file():
        return f"{path} does not exist"
    if name not in defined_tests(ROOT / path):
        return f"{path} defines no {name}"
    if parameter and repr(parameter.rstrip("]")) not in (ROOT / path).read_text().replace('"', "'"):
        return f"{path} has no parameter {parameter.rstrip(']')!r} for {name}"
    return None


def test_every_claim_names_a_test_that_exists() -> None:
    wrong = [
        f"{block.where}: {reason}"
        for block in every_block()
        for node_id in block.tests
        if (reason := missing_test(node_id)) is not None
    ]
    assert wrong == []


def test_a_run_claim_names_a_test_that_reads_its_blocks() -> None:
    """A test named by ``run:`` must fetch its blocks by its node id, or it runs something else."""
    wrong = []
    for block in every_block():
        if block.claim != "run":
            continue
        for node_id in block.tests:
            path, _, name = node_id.partition("::")
            source = function_source(ROOT / path, name.partition("[")[0])
            if "run_by(" not in source:
                wrong.append(f"{block.where}: {node_id} does not call run_by/one_run_by")
    assert wrong == []


def test_the_claim_reader_finds_claims_and_fences(tmp_path: Path) -> None:
    from tests.docs_blocks import blocks

    document = tmp_path / "sample.md"
    document.write_text(
        "text\n<!-- run: tests/unit/test_docs_code.py::test_x[a] -->\n```python\nprint(1)\n```\n"
        "1. item\n\n   ```sh\n   make test\n   ```\n"
        "<!-- fragment: covered by tests/a.py::test_b, tests/c/d.py::test_e -->\n````\n```\n````\n"
    )
    found = blocks(document)
    assert [(b.language, b.claim, b.tests, b.text) for b in found] == [
        ("python", "run", ("tests/unit/test_docs_code.py::test_x[a]",), "print(1)\n"),
        ("sh", "", (), "make test\n"),
        ("", "fragment", ("tests/a.py::test_b", "tests/c/d.py::test_e"), "```\n"),
    ]
    assert re.fullmatch(NODE_ID, "tests/integration/test_readme.py::test_y[wsgi]")


# The site -------------------------------------------------------------------------------------


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists, in order (``- Title: page.md`` or ``- page.md``)."""
    text = MKDOCS.read_text()
    nav = text[text.index("\nnav:\n") :]
    return re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w./-]+\.md)\s*$", nav, re.MULTILINE)


def test_every_page_is_in_the_nav_once_and_every_nav_entry_exists() -> None:
    pages = nav_pages()
    on_disk = sorted(
        str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "_ext" not in path.parts
    )
    assert sorted(set(pages)) == sorted(pages), "a page is twice in the nav"
    assert [page for page in on_disk if page not in pages] == [], "add these to mkdocs.yml's nav"
    assert [page for page in pages if page not in on_disk] == [], "the nav names missing pages"
    assert pages[0] == "index.md"


def test_the_site_fetches_nothing_from_the_network() -> None:
    """No web fonts (Material's default is Google Fonts), no remote CSS/JS, only local plugins."""
    text = MKDOCS.read_text()
    settings = [line.split("#", 1)[0] for line in text.splitlines()]
    assert re.search(r"^\s+font: false$", text, re.MULTILINE)
    assert not [line for line in settings if "http://" in line or "https://" in line]
    plugins = text[text.index("\nplugins:\n") : text.index("\nmarkdown_extensions:\n")]
    assert re.findall(r"^  - (\w+)", plugins, re.MULTILINE) == ["search", "mkdocstrings"]
    assert "extra_css" not in text
    assert "extra_javascript" not in text


def test_every_public_name_is_on_the_python_api_pages() -> None:
    shown = re.findall(
        r"^::: adapter\.(\w+)$",
        (DOCS / "python-api.md").read_text() + (DOCS / "errors.md").read_text(),
        re.MULTILINE,
    )
    assert sorted(set(shown)) == sorted(shown), "a name is shown twice"
    public = {name for name in adapter.__all__ if not name.startswith("_")}
    assert sorted(public - set(shown)) == [], "add ::: adapter.NAME to docs/python-api.md"
    assert sorted(set(shown) - public) == [], "only names adapter.__all__ exports"


def cli_commands() -> list[str]:
    from adapter.cli import _parser

    def walk(parser: argparse.ArgumentParser, name: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for verb, child in action.choices.items():
                    children = walk(child, f"{name} {verb}")
                    found += children or [f"{name} {verb}"]
        return found

    return walk(_parser(), "oidc-adapter")


def test_every_command_is_in_the_command_line_reference() -> None:
    reference = (DOCS / "cli.md").read_text()
    commands = cli_commands()
    assert "oidc-adapter keys generate" in commands
    assert [c for c in commands if f"`{c} " not in reference and f"`{c}`" not in reference] == []


def test_the_readme_is_a_front_page_whose_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LIMIT, "README.md is a front page: move it to docs/"
    for document in ("README.md", "CONTRIBUTING.md"):
        text = (ROOT / document).read_text()
        targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
        local = [t for t in targets if not re.match(r"\w+:", t)]
        assert local, document
        assert [t for t in local if not (ROOT / t).exists()] == [], document


# The blocks a unit test runs as written ------------------------------------------------------


def test_the_error_tree_is_the_class_tree(request: pytest.FixtureRequest) -> None:
    block: Block = one_run_by(request.node.nodeid)
    parents: list[type] = []
    seen = []
    for line in block.text.splitlines():
        depth = (len(line) - len(line.lstrip("│├└─ "))) // 4
        name = line.lstrip("│├└─ ").split()[0]
        cls = getattr(adapter, name)
        del parents[depth:]
        if parents:
            assert cls.__bases__ == (parents[-1],), f"{name} is a subclass of {parents[-1]}"
        else:
            assert cls.__bases__[0] in (Exception, UserWarning), name
        parents.append(cls)
        seen.append(name)
    errors = {n for n in adapter.__all__ if n.endswith(("Error", "Warning"))}
    assert sorted(seen) == sorted(errors)


def test_the_access_rules_example_loads(request: pytest.FixtureRequest) -> None:
    block = one_run_by(request.node.nodeid)
    document = tomllib.loads(block.text)
    config = adapter.load_config(
        {"issuer": "https://sso.example.com/realms/demo", "client-id": "my-app", **document}
        | {"public-client": True}
    )
    rules = config.web.access_rules
    assert [rule.path for rule in rules] == ["/admin/*", "/api/*"]
    assert rules[0].requirement.roles == {"admin"}
    assert not rules[0].methods
    assert rules[1].methods == {"POST", "PUT", "DELETE"}
    assert rules[1].requirement.scopes == {"api:write"}


def test_the_deployment_examples_load(request: pytest.FixtureRequest) -> None:
    """keycloak.json with a truststore (read when the HTTP client is built, not at load) and the
    native back-channel URL, completed with a client where the snippet shows none."""
    truststore, backchannel = run_by(request.node.nodeid)
    kept = adapter.load_config(json.loads(truststore.text))
    assert kept.issuer == "https://sso.corp.example/realms/demo"
    assert str(kept.truststore) == "/etc/my-app/truststore.jks"
    internal = adapter.load_config(
        {**tomllib.loads(backchannel.text), "client-id": "my-app", "public-client": True}
    )
    assert internal.issuer == "https://sso.example.com/realms/demo"
    assert internal.backchannel_url == "http://keycloak:8080"
    assert internal.ssl_required == "none"


def test_the_architecture_tree_names_what_exists(request: pytest.FixtureRequest) -> None:
    """Each name in the module tree (at an entry's indentation, not in a description) exists."""
    block = one_run_by(request.node.nodeid)
    stack: list[tuple[int, Path]] = []
    missing, named = [], 0
    for line in block.text.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent >= ENTRY_INDENT_BELOW:  # a description's next line
            continue
        name = line.split()[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (stack[-1][1] if stack else ROOT) / name
        named += 1
        if not path.exists():
            missing.append(str(path.relative_to(ROOT)))
        if name.endswith("/"):
            stack.append((indent, path))
    assert named > 50
    assert missing == [], "docs/architecture.md names what is not there"
