"""A WSGI app (Flask, Django) needs no Starlette (issue 20): Starlette is the ``asgi`` extra.

Each check runs in a fresh interpreter whose import system refuses ``starlette`` as if it were
not installed: ``import adapter``, the WSGI shell, the Flask and Django idioms and every other
module but the ASGI ones import without it, and a Flask app signs a user in through the real
WSGI middleware (the in-process test issuer, no network). The ASGI names, asked for, raise
one ImportError naming the extra to install.
"""

from __future__ import annotations

from typing import Any

import pytest

import adapter
import adapter.asgi
from tests.fresh_python import printed_json

NO_STARLETTE = """
import importlib.abc, sys

class NoStarlette(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "starlette" or name.startswith("starlette."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoStarlette())
"""

WSGI_APP = """
import importlib, json, pkgutil, tempfile
from pathlib import Path

import adapter
from adapter import OIDCWSGIMiddleware, load_config
import adapter.integrations.flask
import adapter.integrations.django
import adapter.testing

ASGI = {"adapter.asgi", "adapter.integrations.starlette", "adapter.integrations.fastapi"}
LATER = {"adapter.integrations.django.backend"}  # needs Django's app registry: imported after setup
for module in pkgutil.walk_packages(adapter.__path__, "adapter."):
    if module.name not in ASGI | LATER:
        importlib.import_module(module.name)

import flask
import httpx
from adapter.testing import TEST_ISSUER, TestIssuer

config = Path(tempfile.mkdtemp()) / "adapter.toml"
config.write_text(
    f'issuer = "{TEST_ISSUER}"\\nclient-id = "shop"\\n'
    'session-secret = "test-session-secret-0123456789abcdef0123"\\n'
    '[credentials]\\nmethod = "client_secret_basic"\\nsecret = "not-checked"\\n'
    '[[access]]\\npath = "/admin"\\nroles = ["admin"]\\n'
)
issuer = TestIssuer()
issuer.check(load_config(config))
app = flask.Flask("shop")
oidc = adapter.integrations.flask.OIDC(app, config=config, http=issuer.http())
assert isinstance(app.wsgi_app, OIDCWSGIMiddleware)

@app.get("/admin")
@oidc.require(roles=["admin"])
def admin():
    return f"hello {oidc.identity.display_name}"

transport = httpx.WSGITransport(app=app)
with httpx.Client(transport=transport, base_url="https://testserver") as client:
    issuer.sign_in(client, "alice", roles=["admin"], next="/admin")
    answer = client.get("/admin")
issuer.close()
print(json.dumps({
    "status": answer.status_code,
    "body": answer.text,
    "starlette": sorted(m for m in sys.modules if m.split(".")[0] == "starlette"),
}))
"""

ASGI_NAMES = """
import json
import adapter

def error(run):
    try:
        run()
    except ImportError as failure:
        return [type(failure).__name__, str(failure), failure.name]
    return None

def middleware():
    from adapter import OIDCMiddleware

def test_issuer():
    from adapter.testing import TestIssuer
    TestIssuer().asgi(object(), "unread.toml")

print(json.dumps({
    "listed": "OIDCMiddleware" in adapter.__all__ and "OIDCMiddleware" in dir(adapter),
    "from": error(middleware),
    "attribute": error(lambda: adapter.OIDCMiddleware),
    "again": error(middleware),
    "asgi": error(lambda: __import__("adapter.asgi")),
    "starlette": error(lambda: __import__("adapter.integrations.starlette")),
    "fastapi": error(lambda: __import__("adapter.integrations.fastapi")),
    "testing": error(test_issuer),
}))
"""


def without_starlette(program: str) -> dict[str, Any]:
    """What ``program`` printed (one JSON line), run where Starlette cannot be imported."""
    result: dict[str, Any] = printed_json(NO_STARLETTE + program)
    return result


def test_a_wsgi_app_runs_without_starlette() -> None:
    ran = without_starlette(WSGI_APP)
    assert ran["starlette"] == []
    assert ran["status"] == 200, ran["body"]
    assert ran["body"] == "hello alice"


def test_the_asgi_names_say_which_extra_to_install() -> None:
    ran = without_starlette(ASGI_NAMES)
    assert ran["listed"] is True, "OIDCMiddleware stays in adapter.__all__ and dir(adapter)"
    asgi_hint = "pip install 'oidc-adapter[asgi]'"
    for asked in ("from", "attribute", "again", "asgi", "testing"):
        kind, message, name = ran[asked]
        assert kind == "ImportError", (asked, message)
        assert message.startswith("OIDCMiddleware (adapter.asgi) needs Starlette"), (asked, message)
        assert asgi_hint in message, (asked, message)
        assert name == "starlette"
    _, message, _ = ran["starlette"]
    assert message.startswith("adapter.integrations.starlette needs Starlette"), message
    assert asgi_hint in message
    _, message, _ = ran["fastapi"]
    # FastAPI brings Starlette: the message names FastAPI's extra
    assert message.startswith("adapter.integrations.fastapi needs FastAPI"), message
    assert "pip install 'oidc-adapter[fastapi]'" in message


def test_the_asgi_names_load_when_asked_for() -> None:
    from adapter import OIDCMiddleware

    assert OIDCMiddleware is adapter.asgi.OIDCMiddleware
    assert adapter.OIDCMiddleware is OIDCMiddleware
    assert set(adapter.__all__) <= set(dir(adapter))
    with pytest.raises(AttributeError, match="has no attribute 'OIDCMiddlewar'"):
        _ = adapter.OIDCMiddlewar  # type: ignore[attr-defined]
