"""Shared test helpers: external tools (keytool, openssl) and running the CLI for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of an external tool; a missing tool fails the test in CI and skips it elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_tool(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run keytool/openssl; a non-zero exit fails the test with the tool's own output."""
    require_tool(args[0])
    result = subprocess.run(args, input=input, capture_output=True, check=False, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run ``oidc-adapter`` as a real process (no terminal on stdin), in ``tmp_path``."""

    def run(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "adapter.cli", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env=environment,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    return run
