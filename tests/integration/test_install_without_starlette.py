"""Installed as a Flask app installs it, the adapter brings no Starlette (issue 20).

The package is built and installed by the real pip, with ``[flask]``, into a fresh virtualenv
(from a copy of the files a distribution holds, so the working tree is not touched): Starlette
is not installed, ``adapter.integrations.flask`` imports, ``OIDCMiddleware`` names the extra,
and the metadata lists Starlette under the ``asgi`` extra only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib.metadata, importlib.util, json

import adapter
import adapter.integrations.flask
from adapter import OIDCWSGIMiddleware, load_config

try:
    from adapter import OIDCMiddleware
    asgi = None
except ImportError as error:
    asgi = str(error)
print(json.dumps({
    "from": adapter.__file__,
    "starlette": importlib.util.find_spec("starlette") is not None,
    "asgi": asgi,
    "requires": importlib.metadata.requires("oidc-adapter"),
}))
"""


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def test_a_flask_install_has_no_starlette(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "adapter", source / "adapter", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    installed = run(venv / "bin/pip", "install", "--quiet", f"{source}[flask]", timeout=300)
    if installed.returncode != 0 and not IN_CI and "No matching distribution" in installed.stderr:
        pytest.skip(f"pip reached no package index: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr

    checked = run(venv / "bin/python", "-I", "-c", CHECK)  # -I: not this checkout's adapter

    assert checked.returncode == 0, checked.stderr
    found = json.loads(checked.stdout)
    assert Path(found["from"]).is_relative_to(venv), found["from"]  # the installed package
    assert found["starlette"] is False, "the [flask] install brought Starlette"
    assert "pip install 'oidc-adapter[asgi]'" in found["asgi"]
    starlette = [r for r in found["requires"] if r.startswith("starlette")]
    assert starlette, "Starlette is named by an extra"
    assert all("extra ==" in r for r in starlette), starlette  # never a core dependency
    assert any('extra == "asgi"' in r for r in starlette), starlette
