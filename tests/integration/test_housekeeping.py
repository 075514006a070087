"""The Makefile and the packaging metadata, with the real ``make`` (issue 13, item 9).

``make clean`` must leave a checkout as a fresh clone has it, ``make demo`` must install only
what the demo runs, and the licence must be in the SPDX form that setuptools no longer warns
about. The Makefile runs in a copy, so nothing in the working tree is touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]

# Everything the Makefile's targets create: the virtualenv (and its stamps), the identity
# server's node modules, the demos' directories, pip's egg-info and build directory, the
# documentation site, the tools' caches, and bytecode.
CREATED = [
    ".venv/bin/python",
    ".venv/.installed",
    "tests/idp/node_modules/.package-lock.json",
    "demo/adapter.toml",
    "demo-keys/adapter.toml",
    "oidc_adapter.egg-info/PKG-INFO",
    "build/lib/adapter/__init__.py",
    "dist/oidc_adapter-0.1.0.tar.gz",
    "site/index.html",
    ".pytest_cache/README.md",
    ".mypy_cache/CACHEDIR.TAG",
    ".ruff_cache/CACHEDIR.TAG",
    ".hypothesis/examples/x",
    "adapter/cli/__pycache__/__init__.cpython-311.pyc",
    "tests/unit/__pycache__/test_x.cpython-311.pyc",
]
KEPT = ["adapter/cli/__init__.py", "tests/idp/package-lock.json", "pyproject.toml", "README.md"]


def checkout(directory: Path) -> Path:
    """The Makefile, and stand-ins for the files its rules name, in ``directory``."""
    shutil.copy(ROOT / "Makefile", directory / "Makefile")
    for name in KEPT[:-2]:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text("kept\n")
    shutil.copy(ROOT / "pyproject.toml", directory / "pyproject.toml")
    (directory / "README.md").write_text("kept\n")
    return directory


def make(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("make"), "-C", str(directory), *args],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_make_clean_removes_everything_the_makefile_creates(tmp_path: Path) -> None:
    directory = checkout(tmp_path)
    for name in CREATED:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text("made\n")

    result = make(directory, "clean")

    assert result.returncode == 0, result.stderr
    assert [name for name in CREATED if (directory / name).exists()] == []
    assert not (directory / "tests/idp/node_modules").exists()
    assert [name for name in KEPT if not (directory / name).exists()] == []


def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    directory = checkout(tmp_path)
    stamp = directory / "tests/idp/node_modules/.package-lock.json"
    stamp.parent.mkdir(parents=True)
    stamp.write_text("installed\n")  # newer than the lock file: npm ci is not due

    result = make(directory, "--dry-run", "demo")

    assert result.returncode == 0, result.stderr
    installs = [line for line in result.stdout.splitlines() if "pip install" in line]
    assert installs == [
        ".venv/bin/pip install --quiet --upgrade pip",
        ".venv/bin/pip install --quiet -e '.[examples]'",
    ]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    examples = " ".join(extras["optional-dependencies"]["examples"])
    for tool in ("pytest", "playwright", "hypothesis", "mypy", "ruff", "pyjks"):
        assert tool not in examples, f"the demo does not need {tool}"


def test_make_release_check_runs_the_release_test_with_the_release_tools(tmp_path: Path) -> None:
    directory = checkout(tmp_path)

    result = make(directory, "--dry-run", "release-check")

    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if not line.startswith("make")]
    assert ".venv/bin/pip install --quiet -e '.[test,jks,bench]'" in commands
    assert commands[-1] == ".venv/bin/pytest tests/integration/test_release.py"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test_extra = extras["optional-dependencies"]["test"]
    names = {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0] for requirement in test_extra}
    assert {"build", "twine", "trove-classifiers"} <= names  # so make test has them too


def test_make_test_builds_the_documentation_site_strictly(tmp_path: Path) -> None:
    """CI runs ``make test``: a broken link in docs/ fails it as a failing test does."""
    directory = checkout(tmp_path)

    result = make(directory, "--dry-run", "test")

    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if not line.startswith("make")]
    assert ".venv/bin/pip install --quiet -e '.[test,jks,docs]'" in commands
    build = [line for line in commands if "mkdocs build" in line]
    assert len(build) == 1, commands
    assert "--strict" in build[0]
    pytest = ".venv/bin/pytest -n 2 --dist loadfile"  # a test file's tests share one worker
    assert commands.index(build[0]) < commands.index(pytest)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    docs_extra = extras["optional-dependencies"]["docs"]
    names = {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0] for requirement in docs_extra}
    assert names == {"mkdocs", "mkdocs-material", "mkdocstrings"}


def test_the_licence_is_an_spdx_expression() -> None:
    """setuptools >= 77 reads ``license = "Apache-2.0"``; a table warns on every install."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert not [c for c in pyproject["project"].get("classifiers", []) if "License ::" in c]
    assert "setuptools>=77" in [
        r.split(";")[0].strip() for r in pyproject["build-system"]["requires"]
    ]
