"""Several realms in one app (docs/tenants.md) against two real identity servers, issuers
``.../realms/acme`` and ``.../realms/globex`` with keys of their own, in both shells: alice
signs in at ``/acme/...`` and bob at ``/globex/...`` in one browser; a session of one tenant is
nothing at the other; a logout at one leaves the other signed in; each tenant serves its own
``/k_jwks``; a broken tenant file keeps that tenant's last good state and touches no other."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, current_identity
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, web_client

SECRETS = {"acme": "acme-client-secret-" + "a" * 40, "globex": "globex-client-secret-" + "g" * 40}
SESSION_SECRET = "tenants-session-secret-" + "s" * 24
API = "urn:oidc-adapter:test-api"
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}


def describe(identity: Any, path: str) -> bytes:
    if identity is None:
        return json.dumps({"user": None, "path": path}).encode()
    return json.dumps(
        {
            "user": identity.display_name,
            "tenant": identity.tenant,
            "csrf": identity.csrf_token,
            "path": path,
        }
    ).encode()


async def app_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = describe(current_identity(scope), scope["path"])
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def app_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [describe(current_identity(environ), environ["PATH_INFO"])]


@dataclass
class World:
    servers: dict[str, IdentityServer]
    directory: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("tenants")
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                IdentityServer(
                    [web_client(SECRETS[name], base=f"{APP}/{name}")],
                    tmp_dir=directory,
                    issuer=f"http://127.0.0.1:{{port}}/realms/{name}",
                    accounts=ACCOUNTS,
                )
            )
            for name in ("acme", "globex")
        }
        yield World(servers, directory)


def write_tenants(world: World, directory: Path) -> Path:
    (directory / "tenants").mkdir(exist_ok=True)
    for name, idp in world.servers.items():
        tenant = directory / "tenants" / f"{name}.toml"
        tenant.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRETS[name]}"\n'
        )
        tenant.chmod(0o600)
    path = directory / "adapter.toml"
    path.write_text(
        f'session-secret = "{SESSION_SECRET}"\npublic-paths = ["/"]\n'
        f'scope = "openid profile email roles"\ntoken-audiences = ["{API}"]\n'
        '[[tenants]]\nname = "acme"\nconfig = "tenants/acme.toml"\npath-prefix = "/acme"\n'
        '[[tenants]]\nname = "globex"\nconfig = "tenants/globex.toml"\npath-prefix = "/globex"\n'
    )
    path.chmod(0o600)
    return path


@dataclass
class App:
    middleware: OIDCMiddleware | OIDCWSGIMiddleware
    browser: Browser
    config: Path


@pytest.fixture(params=["asgi", "wsgi"])
def app(request: pytest.FixtureRequest, world: World, tmp_path: Path) -> Iterator[App]:
    shell = str(request.param)
    path = write_tenants(world, tmp_path)
    with ExitStack() as stack:
        if shell == "asgi":
            middleware: OIDCMiddleware | OIDCWSGIMiddleware = OIDCMiddleware(app_asgi, path)
            client = stack.enter_context(TestClient(middleware, base_url=APP))
            transport: httpx.BaseTransport = client._transport
        else:
            middleware = OIDCWSGIMiddleware(app_wsgi, path)
            transport = httpx.WSGITransport(app=middleware)
            stack.callback(middleware.close)
        idp = world.servers["acme"]
        browser = Browser(Stack(idp, path, {shell: transport}), shell)
        stack.callback(browser.http.close)
        yield App(middleware, browser, path)


def sign_in(browser: Browser, world: World, tenant: str, login: str) -> httpx.Response:
    """Sign in at ``tenant``'s pages, at its own identity server."""
    browser.idp = world.servers[tenant]
    return browser.log_in(f"/{tenant}/profile", login)


def code_grants(world: World) -> dict[str, int]:
    """How many codes each identity server has exchanged so far (its own log)."""
    return {
        name: idp.settled_logs().count('"grant.success","grant_type":"authorization_code"')
        for name, idp in world.servers.items()
    }


def test_two_realms_sign_in_side_by_side_in_one_browser(app: App, world: World) -> None:
    before = code_grants(world)
    acme_page = sign_in(app.browser, world, "acme", "alice")
    assert acme_page.json() == {
        "user": "alice", "tenant": "acme", "csrf": acme_page.json()["csrf"],
        "path": "/acme/profile",
    }  # fmt: skip
    after_acme = code_grants(world)
    assert after_acme == {"acme": before["acme"] + 1, "globex": before["globex"]}
    globex_page = sign_in(app.browser, world, "globex", "bob")
    assert (globex_page.json()["user"], globex_page.json()["tenant"]) == ("bob", "globex")
    assert code_grants(world) == {"acme": after_acme["acme"], "globex": after_acme["globex"] + 1}
    # Both sessions live on in one browser, each under its own prefix.
    assert app.browser.get("/acme/profile").json()["user"] == "alice"
    assert app.browser.get("/globex/profile").json()["user"] == "bob"
    names = set(app.browser.session_cookies())
    assert names == {"oidc_session_acme", "oidc_session_globex"}, names


def test_a_session_of_one_tenant_is_nothing_at_the_other(app: App, world: World) -> None:
    sign_in(app.browser, world, "acme", "alice")
    acme_cookie = app.browser.session_cookies()["oidc_session_acme"]
    # The same value under globex's cookie name: sealed for acme, it does not open there.
    answer = app.browser.get(
        "/globex/profile", cookies={"oidc_session_globex": acme_cookie}, follow_redirects=False
    )
    assert answer.status_code == 302
    assert answer.headers["location"].startswith("/globex/oidc/login?")  # not signed in there


def test_a_logout_at_one_tenant_leaves_the_other_signed_in(app: App, world: World) -> None:
    sign_in(app.browser, world, "acme", "alice")
    sign_in(app.browser, world, "globex", "bob")
    csrf = app.browser.get("/acme/profile").json()["csrf"]
    out = app.browser.post("/acme/oidc/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code in (302, 303), out.text
    assert out.headers["location"].startswith(world.servers["acme"].issuer)
    again = app.browser.get("/acme/profile", follow_redirects=False)
    assert again.status_code == 302
    assert app.browser.get("/globex/profile").json()["user"] == "bob"


def test_each_tenant_serves_its_own_jwks_and_routes(app: App) -> None:
    first = app.browser.get("/acme/k_jwks")
    second = app.browser.get("/globex/k_jwks")
    assert first.status_code == second.status_code == 200
    assert first.json() == {"keys": []} == second.json()  # secret clients: nothing to publish
    assert app.browser.get("/k_jwks").status_code == 404  # no tenant at the root
    assert app.browser.get("/").json() == {"user": None, "path": "/"}  # shared public path
    assert app.browser.get("/about").status_code == 404  # no tenant, not public: closed


def test_a_broken_tenant_file_keeps_its_last_state_and_touches_no_other(
    app: App, world: World
) -> None:
    sign_in(app.browser, world, "acme", "alice")
    sign_in(app.browser, world, "globex", "bob")
    globex_file = app.config.parent / "tenants" / "globex.toml"
    globex_file.write_text("this is = not [toml\n" + globex_file.read_text())
    assert app.middleware.reload() is False
    statuses = {site.name: site.shell.status for site in app.middleware.tenancy}
    assert statuses["acme"] is not None
    assert statuses["acme"].last_error is None
    assert statuses["acme"].reloads == 1
    assert statuses["globex"] is not None
    assert "globex.toml" in str(statuses["globex"].last_error)
    assert app.browser.get("/globex/profile").json()["user"] == "bob"  # its last good state
    assert app.browser.get("/acme/profile").json()["user"] == "alice"


def service_token(idp: IdentityServer, secret: str) -> str:
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API},
        auth=("web", secret),
    )
    token: str = answer.json()["access_token"]
    return token


def test_bearer_tokens_on_a_shared_path_go_to_their_issuers_tenant(app: App, world: World) -> None:
    for name, idp in world.servers.items():
        token = service_token(idp, SECRETS[name])
        answer = app.browser.get("/api/reports", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["tenant"] == name
        assert answer.json()["path"] == "/api/reports"


def test_a_token_from_an_issuer_no_tenant_has_is_refused_without_a_call(app: App) -> None:
    """A well-formed token whose issuer is a server the app does not serve (a listening socket
    here): 401, and nobody connected to that issuer to fetch its keys."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        stranger.setblocking(False)
        issuer = f"http://127.0.0.1:{stranger.getsockname()[1]}/realms/initech"
        key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        now = int(time.time())
        claims = {"iss": issuer, "sub": "mallory", "aud": API, "iat": now, "exp": now + 300}
        token = jwt.encode({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}, claims, key)
        answer = app.browser.get("/api/reports", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        with pytest.raises(BlockingIOError):
            stranger.accept()  # no connection is waiting: nobody asked that issuer anything


def test_a_tenants_identity_server_down_touches_no_other_tenant(
    world: World, tmp_path: Path
) -> None:
    """globex's server does not answer (a port nobody listens on): globex's sign-in is a 502
    page, while acme signs in and serves as before."""
    path = write_tenants(world, tmp_path)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/realms/globex"  # nobody listens
    globex = tmp_path / "tenants" / "globex.toml"
    globex.write_text(globex.read_text().replace(world.servers["globex"].issuer, dead))
    middleware = OIDCWSGIMiddleware(app_wsgi, path)
    transport = httpx.WSGITransport(app=middleware)
    browser = Browser(Stack(world.servers["acme"], path, {"wsgi": transport}), "wsgi")
    down = browser.get("/globex/oidc/login", headers={"Accept": "text/html"})
    assert down.status_code == 502, down.text
    assert sign_in(browser, world, "acme", "alice").json()["user"] == "alice"
    assert browser.get("/acme/k_jwks").status_code == 200
    browser.http.close()
    middleware.close()
