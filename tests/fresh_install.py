"""The package as a user installs it, for the tests that check what a distribution holds.

A copy of the source tree (so that builds leave no build/, dist/ or egg-info in the working
tree), a fresh virtualenv in a temporary directory outside the checkout, pip from the package
index, the examples copied beside the virtualenv, an example served by the virtualenv's Python
(nothing of the checkout on its path), and a sign-in at the test identity server through it.
Used by tests/integration/test_install_without_starlette.py and test_release.py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]

# What a checkout holds besides its sources: environments, tools' output (site: mkdocs'),
# caches, demo files.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "node_modules", "__pycache__", ".*_cache", ".hypothesis",
    "build", "dist", "site", "*.egg-info", "demo", "demo-keys",
)  # fmt: skip
# What pip says when no package index answers (a machine offline): a skip there, never in CI.
OFFLINE = ("No matching distribution", "Could not find a version that satisfies")


def copy_source(destination: Path) -> Path:
    """The checkout's files as a fresh clone has them (and uncommitted work) at ``destination``."""
    shutil.copytree(ROOT, destination, ignore=NOT_SOURCE)
    return destination


def run(
    *args: str | Path,
    timeout: float = 120,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (no terminal on stdin); its output is captured as text."""
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def skip_if_offline(result: subprocess.CompletedProcess[str], what: str) -> None:
    """A pip or build run that found no package index skips the test, except in CI."""
    output = result.stdout + result.stderr
    if result.returncode != 0 and not IN_CI and any(text in output for text in OFFLINE):
        pytest.skip(f"{what} reached no package index: {output[-300:]}")


def make_venv(path: Path, python: str | Path, *requirements: str | Path) -> Path:
    """A fresh virtualenv at ``path`` with ``requirements`` installed by its own pip."""
    assert not path.resolve().is_relative_to(ROOT), "the virtualenv belongs outside the checkout"
    made = run(python, "-m", "venv", path)
    assert made.returncode == 0, made.stderr
    installed = run(path / "bin/pip", "install", "--quiet", *requirements, timeout=300)
    skip_if_offline(installed, "pip")
    assert installed.returncode == 0, installed.stderr
    return path


def copy_examples(directory: Path, app: str) -> Path:
    """``examples/`` with only ``app`` (and the page it shares) in ``directory``: the directory
    to run the example from, so that only it is on the example's path besides the virtualenv."""
    examples = directory / "examples"
    examples.mkdir(parents=True)
    for name in ("__init__.py", "showcase.py"):
        shutil.copy(ROOT / "examples" / name, examples / name)
    shutil.copytree(ROOT / "examples" / app, examples / app, ignore=NOT_SOURCE)
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    command: Sequence[str | Path], cwd: Path, env: Mapping[str, str], url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run an app server until the block ends; it answers ``url`` when the block starts, and
    its output must hold no traceback when it is stopped."""
    app = subprocess.Popen(
        [str(part) for part in command], cwd=cwd, env=dict(env),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until_up(url, app)
        yield app
    finally:
        app.terminate()
        _, errors = app.communicate(timeout=10)
        assert b"Traceback" not in errors, errors.decode()[-2000:]


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll ``url`` until the app answers (bounded; the answer is the synchronisation point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the example exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # back-off between polls
    raise AssertionError(f"{url} did not answer within {timeout} s")


def sign_in(base: str, issuer: str, path: str = "/profile", login: str = "alice") -> str:
    """Ask the app at ``base`` for ``path`` as a browser would and sign in as ``login`` at the
    identity server (its login and consent forms); the page the app then shows."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as browser:
        response = browser.get(path, headers={"Accept": "text/html"})
        for _ in range(20):
            if response.is_redirect:
                response = browser.get(response.url.join(response.headers["location"]))
                continue
            if not str(response.url).startswith(issuer):
                assert response.status_code == 200, (response.status_code, response.text[:300])
                return response.text
            form = response.text.split('action="', 1)[1].split('"', 1)[0]
            prompt = "login" if 'name="login"' in response.text else "consent"
            data = {"prompt": prompt, "login": login, "password": "any"}
            response = browser.post(response.url.join(form), data=data)
    raise AssertionError("the sign-in took too many steps")
