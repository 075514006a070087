"""Installed as a Flask app installs it, the adapter brings no Starlette (issue 20).

The package is built and installed by the real pip, with ``[flask]``, into a fresh virtualenv
(from a copy of the files a distribution holds, so the working tree is not touched): Starlette
is not installed, ``adapter.integrations.flask`` imports, ``OIDCMiddleware`` names the extra,
and the metadata lists Starlette under the ``asgi`` extra only. Then the Flask example runs
from that virtualenv (``flask run``, the examples copied beside it and nothing else of the
checkout on its path) and a user signs in to it at the test identity server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.idp_server import IdentityServer
from tests.web_client import web_client

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

    profile = sign_in_to_the_flask_example(venv, tmp_path)
    assert "<p id='name'>alice</p>" in profile, profile[:300]  # signed in, as alice


SECRET = "install-test-client-secret"
SESSION_SECRET = "install-test-session-secret-0123456789abcdef"


def sign_in_to_the_flask_example(venv: Path, tmp_path: Path) -> str:
    """Run the Flask example with the virtualenv's Python (``python -m flask run``: only the
    examples' directory on its path besides the virtualenv) and sign in as alice; the page
    the example shows her."""
    apps = tmp_path / "apps" / "examples"
    apps.mkdir(parents=True)
    for name in ("__init__.py", "showcase.py"):
        shutil.copy(ROOT / "examples" / name, apps / name)
    shutil.copytree(ROOT / "examples" / "flask_app", apps / "flask_app",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with IdentityServer([web_client(SECRET, base=base)], tmp_dir=tmp_path) as idp:
        config = tmp_path / "adapter.toml"
        config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\nsession-secret = "{SESSION_SECRET}"\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
        )
        config.chmod(0o600)
        environment = {"PATH": str(venv / "bin"), "OIDC_ADAPTER_CONFIG": str(config),
                       "EXAMPLE_API_URL": base}  # fmt: skip
        command = [venv / "bin/python", "-m", "flask", "--app",
                   "examples.flask_app.app:create_app", "run", "--port", str(port)]  # fmt: skip
        app = subprocess.Popen(
            [str(part) for part in command], cwd=apps.parent, env=environment,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            _wait_until_up(f"{base}/", app)
            with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as browser:
                first = browser.get("/profile", headers={"Accept": "text/html"})
                return _walk(browser, first, idp.issuer)
        finally:
            app.terminate()
            _, errors = app.communicate(timeout=10)
            assert b"Traceback" not in errors, errors.decode()[-2000:]


def _walk(browser: httpx.Client, response: httpx.Response, issuer: str) -> str:
    """Follow redirects and the identity server's login and consent forms to the app's page."""
    for _ in range(20):
        if response.is_redirect:
            response = browser.get(response.url.join(response.headers["location"]))
            continue
        if not str(response.url).startswith(issuer):
            assert response.status_code == 200, (response.status_code, response.text[:300])
            return response.text
        form = response.text.split('action="', 1)[1].split('"', 1)[0]
        prompt = "login" if 'name="login"' in response.text else "consent"
        data = {"prompt": prompt, "login": "alice", "password": "any"}
        response = browser.post(response.url.join(form), data=data)
    raise AssertionError("the sign-in took too many steps")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
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
