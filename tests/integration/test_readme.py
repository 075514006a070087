"""The README's snippets are true (issue 13, item 8): each fenced block is run or checked here.

A snippet that only drifts silently is worse than none, so every block in README.md is claimed
by exactly one test below: the configuration example is loaded by the real CLI with keystores
the CLI made, the "Use it" code runs as written in a directory holding that configuration and
answers requests, the command lines name Makefile targets and pyproject extras that exist, and
the remaining Python (which needs a browser or a live server) is compiled with every name it
imports from ``adapter`` resolved. The last test fails when a new block appears unclaimed.
"""

from __future__ import annotations

import importlib
import re
import runpy
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CliRunner

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PASSWORD = "readme-keystore-Pa55"


@dataclass(frozen=True)
class Block:
    language: str
    line: int
    text: str


def blocks() -> list[Block]:
    """Every fenced block of README.md, with the line its fence opens on."""
    found: list[Block] = []
    lines = README.read_text().splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("```"):
            start, language = index, lines[index][3:].strip()
            index += 1
            body: list[str] = []
            while not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            found.append(Block(language, start + 1, "\n".join(body) + "\n"))
        index += 1
    return found


def only(language: str, marker: str) -> Block:
    matching = [b for b in blocks() if b.language == language and marker in b.text]
    assert len(matching) == 1, f"expected one {language} block containing {marker!r}"
    return matching[0]


CONFIG_BLOCK = ("toml", "[[credentials.keys]]")
USE_IT_BLOCK = ("python", "OIDCWSGIMiddleware(")
QUICK_START_BLOCK = ("sh", "make demo")
INSTALL_BLOCK = ("sh", "pip install")
LIBRARY_BLOCK = ("python", "import adapter\n")
IDIOMS_BLOCK = ("python", "adapter.starlette")
BENCH_TABLE_BLOCK = ("", "benchmark ")
CLAIMED = [
    CONFIG_BLOCK,
    USE_IT_BLOCK,
    QUICK_START_BLOCK,
    INSTALL_BLOCK,
    LIBRARY_BLOCK,
    IDIOMS_BLOCK,
    BENCH_TABLE_BLOCK,
]


@pytest.fixture
def readme_config(tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """README's configuration as adapter.toml, and the keystores it names (made by the CLI)."""
    (tmp_path / "keys").mkdir()
    env = {"KEYSTORE_PASSWORD": PASSWORD}
    for name in ("keys/2026-11.p12", "keys/2026-12.p12"):
        made = cli("keys", "generate", "--alias", "my-app", "--out", name,
                   "--store-password-env", "KEYSTORE_PASSWORD", env=env)  # fmt: skip
        assert made.returncode == 0, made.stderr
    config = tmp_path / "adapter.toml"
    config.write_text(only(*CONFIG_BLOCK).text)
    monkeypatch.setenv("KEYSTORE_PASSWORD", PASSWORD)
    return config


def test_the_configuration_example_loads(readme_config: Path, cli: CliRunner) -> None:
    checked = cli("config", "check", str(readme_config), env={"KEYSTORE_PASSWORD": PASSWORD})
    assert checked.returncode == 0, checked.stderr
    assert "https://sso.example.com/realms/demo" in checked.stdout
    assert "my-app" in checked.stdout
    assert "private_key_jwt" in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr


def test_the_use_it_code_runs_as_written(
    readme_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(readme_config.parent)
    script = readme_config.parent / "use_it.py"
    script.write_text(only(*USE_IT_BLOCK).text)
    namespace = runpy.run_path(str(script), run_name="readme_use_it")

    import flask

    from adapter import OIDCMiddleware, OIDCWSGIMiddleware

    assert isinstance(namespace["app"], OIDCMiddleware)
    flask_app = namespace["flask_app"]
    assert isinstance(flask_app, flask.Flask)
    assert isinstance(flask_app.wsgi_app, OIDCWSGIMiddleware)

    # Both apps publish the configured keys without the identity server, and send an anonymous
    # browser to log in instead of running the view.
    wsgi = httpx.Client(transport=httpx.WSGITransport(app=flask_app), base_url="http://app")
    with wsgi:
        jwks = wsgi.get("/k_jwks")
        assert jwks.status_code == 200
        assert len(jwks.json()["keys"]) == 2
        api = wsgi.get("/", headers={"Accept": "application/json"})
        assert api.status_code == 401
    asgi = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=namespace["app"]), base_url="http://app"
    )

    import asyncio

    async def fetch() -> httpx.Response:
        async with asgi:
            return await asgi.get("/k_jwks")

    assert asyncio.run(fetch()).json() == jwks.json()


def test_the_quick_start_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    commands = [line.split("#")[0].split() for line in only(*QUICK_START_BLOCK).text.splitlines()]
    assert [words[:2] for words in commands] == [["make", "demo"], ["make", "test"]]
    for words in commands:
        assert re.search(rf"^{words[1]}:", makefile, re.MULTILINE), words


def test_the_install_lines_name_real_extras() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    block = only(*INSTALL_BLOCK).text
    for line in block.splitlines():
        words = shlex.split(line.split("#")[0])
        assert words[:3] == ["pip", "install", "-e"], line
        named = re.findall(r"\[([a-z,]+)\]", words[3])
        assert all(extra in extras for group in named for extra in group.split(",")), line
    mentioned = re.findall(r"\[(\w+)\]", block)
    assert set(mentioned) <= extras, set(mentioned) - extras


@pytest.mark.parametrize("marker", [LIBRARY_BLOCK, IDIOMS_BLOCK], ids=["library", "idioms"])
def test_the_other_python_compiles_and_its_imports_exist(marker: tuple[str, str]) -> None:
    """These need a browser or a live server; the examples/ tests run the same calls for real."""
    text = only(*marker).text
    compile(text, f"README.md:{only(*marker).line}", "exec")
    for module, names in re.findall(r"^from (adapter[\w.]*) import ([\w, ]+)", text, re.M):
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"{module}.{name.strip()}"
    for attribute in re.findall(r"\badapter\.(\w+)\(", text):
        assert hasattr(importlib.import_module("adapter"), attribute), attribute
    for module in re.findall(r"\b(adapter\.\w+)\.\w+\(", text):
        importlib.import_module(module)


def test_every_block_is_claimed_by_a_test() -> None:
    unclaimed = [
        f"README.md:{block.line} ({block.language or 'plain'})"
        for block in blocks()
        if not any(
            block.language == language and marker in block.text for language, marker in CLAIMED
        )
    ]
    assert unclaimed == [], "add a test for each of these snippets"
