"""An app's own test suite, written only with ``adapter.testing``: an admin-only route (an
``[[access]]`` rule in the app's configuration) as alice (admin) and bob (no admin), through the
real middleware in both shells, with browser sessions and bearer tokens, while every socket
connection is refused: no identity server process, no network.

The app code below is what an app would have; the tests use the ``oidc_test_issuer`` fixture
(``pytest_plugins = ["adapter.testing"]``) and nothing from this repository's test helpers.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from adapter import ConfigError, current_identity

if TYPE_CHECKING:
    from adapter.testing import TestIssuer

# As an app's conftest.py would say it. (adapter.testing is imported in the tests themselves:
# imported here first, pytest could not register it as a plugin with assertion rewriting.)
pytest_plugins = ["adapter.testing"]
TEST_ISSUER = "https://test-issuer.invalid"

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
BASE = "https://testserver"  # the session cookie is Secure on a non-loopback host


# -- the app under test (what an app's package would hold) -----------------------------------


def starlette_app() -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        user = request.user
        roles = sorted(getattr(user, "roles", ()))
        name = user.display_name if user.is_authenticated else None
        return JSONResponse({"user": name, "roles": roles})

    return Starlette(routes=[Route("/", whoami), Route("/admin/users", whoami)])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    identity = current_identity(environ)
    body = {"user": identity.display_name if identity else None}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The app's test configuration: the test issuer, and the admin rule under test."""
    path = tmp_path / "adapter.toml"
    path.write_text(
        f'issuer = "{TEST_ISSUER}"\nclient-id = "shop"\npublic-paths = ["/"]\n'
        'session-secret = "test-session-secret-0123456789abcdef0123"\n'
        '[credentials]\nmethod = "client_secret_basic"\nsecret = "not-checked-by-the-test-issuer"\n'
        '[[access]]\npath = "/admin/*"\nroles = ["admin"]\n'
    )
    return path


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test: nothing runs but this process."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a network connection was attempted: {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


# -- the app's tests --------------------------------------------------------------------------


@pytest.fixture(params=["asgi", "wsgi"])
def client_for(
    request: pytest.FixtureRequest, oidc_test_issuer: TestIssuer, config: Path
) -> Iterator[Any]:
    """A function making a fresh test client (a browser of its own) for the app in a shell."""
    if request.param == "asgi":
        app = oidc_test_issuer.asgi(starlette_app(), config)
        clients: list[Any] = []

        def new_asgi() -> Any:
            client = TestClient(app, base_url=BASE).__enter__()
            clients.append(client)
            return client

        yield new_asgi
        for client in clients:
            client.__exit__(None, None, None)
        return
    middleware = oidc_test_issuer.wsgi(wsgi_app, config)
    transport = httpx.WSGITransport(app=middleware)
    http_clients: list[httpx.Client] = []

    def new_wsgi() -> httpx.Client:
        client = httpx.Client(transport=transport, base_url=BASE)
        http_clients.append(client)
        return client

    yield new_wsgi
    for client in http_clients:
        client.close()


def test_admin_route_lets_alice_in_and_refuses_bob(
    client_for: Any, oidc_test_issuer: TestIssuer
) -> None:
    anonymous = client_for()
    asked = anonymous.get("/admin/users", headers=HTML, follow_redirects=False)
    assert asked.status_code == 302
    assert asked.headers["location"].startswith("/oidc/login")
    assert anonymous.get("/admin/users", headers=JSON).status_code == 401

    alice = client_for()
    oidc_test_issuer.sign_in(alice, "alice", roles=["admin"], next="/admin/users")
    page = alice.get("/admin/users", headers=JSON)
    assert page.status_code == 200
    assert page.json()["user"] == "alice"

    bob = client_for()
    oidc_test_issuer.sign_in(bob, "bob", roles=["user"])
    assert bob.get("/", headers=JSON).json()["user"] == "bob", "signed in"
    refused = bob.get("/admin/users", headers=JSON)
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden", "missing": ["admin"], "kind": "role"}
    assert oidc_test_issuer.requests > 0, "the middleware talked to the test issuer"


def test_roles_reach_the_app_as_granted(client_for: Any, oidc_test_issuer: TestIssuer) -> None:
    client = client_for()
    oidc_test_issuer.sign_in(client, "carol", roles=["admin", "auditor"])
    shown = client.get("/admin/users", headers=JSON).json()
    if "roles" in shown:  # the Starlette app shows them; the WSGI one only the name
        assert shown["roles"] == ["admin", "auditor"]
    assert shown["user"] == "carol"


def test_bearer_tokens_minted_for_the_app(client_for: Any, oidc_test_issuer: TestIssuer) -> None:
    client = client_for()
    admin = oidc_test_issuer.access_token("alice", roles=["admin"])
    allowed = client.get("/admin/users", headers={"Authorization": f"Bearer {admin}", **JSON})
    assert allowed.status_code == 200
    assert allowed.json()["user"] == "alice"
    plain = oidc_test_issuer.access_token("bob", roles=["user"])
    refused = client.get("/admin/users", headers={"Authorization": f"Bearer {plain}", **JSON})
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    other = oidc_test_issuer.access_token("alice", roles=["admin"], audience="another-api")
    wrong = client.get("/admin/users", headers={"Authorization": f"Bearer {other}", **JSON})
    assert wrong.status_code == 401, "a token for another audience is refused as usual"


def test_a_real_issuer_is_refused(tmp_path: Path, config: Path) -> None:
    from adapter.testing import TestIssuer

    with pytest.raises(ConfigError, match="not a test issuer URL"):
        TestIssuer("https://sso.example.com/realms/shop")
    production = tmp_path / "production.toml"
    production.write_text(
        config.read_text().replace(TEST_ISSUER, "https://sso.example.com/realms/shop")
    )
    issuer = TestIssuer()
    with pytest.raises(ConfigError, match="is not the test issuer"):
        issuer.wsgi(wsgi_app, production)
    # Handed to a middleware by hand, its transport still answers for itself only.
    with issuer.http() as http:
        answer = http.get("https://sso.example.com/realms/shop/.well-known/openid-configuration")
    assert answer.status_code == 421


def test_using_it_is_loud(caplog: pytest.LogCaptureFixture, config: Path) -> None:
    from adapter.testing import TestIssuer

    with caplog.at_level(logging.WARNING, logger="adapter.testing"):
        issuer = TestIssuer()
        issuer.wsgi(wsgi_app, config)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("TEST ISSUER" in m and "for tests only" in m for m in messages)
    assert any("trusted by client 'shop'" in m for m in messages)
