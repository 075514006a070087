"""Installed as a Flask app installs it, the adapter brings no Starlette (issue 20).

The package is built and installed by the real pip, with ``[flask]``, into a fresh virtualenv
(from a copy of the source tree, so the working tree is not touched: tests/fresh_install.py):
Starlette is not installed, ``adapter.integrations.flask`` imports, ``OIDCMiddleware`` names
the extra, and the metadata lists Starlette under the ``asgi`` extra only. Then the Flask
example runs from that virtualenv (``flask run``, the examples copied beside it and nothing else
of the checkout on its path) and a user signs in to it at the test identity server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.fresh_install import (
    copy_examples,
    copy_source,
    free_port,
    make_venv,
    run,
    serving,
    sign_in,
)
from tests.idp_server import IdentityServer
from tests.web_client import web_client

pytestmark = pytest.mark.integration

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


def test_a_flask_install_has_no_starlette(tmp_path: Path) -> None:
    source = copy_source(tmp_path / "source")
    venv = make_venv(tmp_path / "venv", sys.executable, f"{source}[flask]")

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
    apps = copy_examples(tmp_path / "apps", "flask_app")
    port = free_port()
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
        command: list[str | Path] = [venv / "bin/python", "-m", "flask", "--app",
                   "examples.flask_app.app:create_app", "run", "--port", str(port)]  # fmt: skip
        with serving(command, cwd=apps, env=environment, url=f"{base}/"):
            return sign_in(base, idp.issuer)
