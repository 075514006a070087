"""One version, in pyproject.toml: ``adapter.__version__`` and ``--version`` read it back from
the installed metadata, and say so when a checkout was never installed."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import adapter
from adapter import _version
from adapter.cli import _parser

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_version_is_pyprojects() -> None:
    """Fails after a version change until the package is installed again (``make test`` does
    that whenever pyproject.toml changes)."""
    stated = tomllib.loads(PYPROJECT.read_text())["project"]["version"]

    assert adapter.__version__ == stated
    assert importlib.metadata.version("oidc-adapter") == stated


def test_the_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == f"oidc-adapter {adapter.__version__}\n"


def test_a_checkout_never_installed_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    _version.installed_version.cache_clear()  # read when first asked for, then kept
    try:
        assert _version.installed_version() == _version.NOT_INSTALLED == "0+unknown"
    finally:
        _version.installed_version.cache_clear()

    monkeypatch.setattr("adapter.cli.__version__", _version.NOT_INSTALLED)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--version"])
    printed = capsys.readouterr().out
    assert printed.startswith("oidc-adapter 0+unknown (not installed")
