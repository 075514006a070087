"""``[[access]]`` rules against the real identity server, in both shells: alice (admin) is let
in, bob (no admin) gets 403, anonymous users log in; bearer tokens get RFC 6750 answers; a
rule changed in the file takes effect on reload, without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware
from tests.idp_server import IdentityServer
from tests.integration.test_security import catch_all_asgi, catch_all_wsgi
from tests.web_client import APP, Browser, Stack, web_client

SECRET = "access-rules-client-secret-" + "a" * 40
SESSION_SECRET = "access-rules-session-secret-" + "s" * 24
API = "urn:oidc-adapter:test-api"
RULES = """
[[access]]
path = "/admin/*"
roles = ["admin"]

[[access]]
path = "/api/*"
methods = ["POST"]
scopes = ["api:write"]
"""
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}


@dataclass
class World:
    idp: IdentityServer
    directory: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("access")
    web = web_client(SECRET)
    with IdentityServer([web], tmp_dir=directory, accounts=ACCOUNTS) as idp:
        yield World(idp, directory)


def write_config(world: World, rules: str = RULES) -> Path:
    path = world.directory / "adapter.toml"
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'scope = "openid profile email roles"\nsession-secret = "{SESSION_SECRET}"\n'
        f'token-audiences = ["{API}"]\n{rules}\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@dataclass
class App:
    middleware: OIDCMiddleware | OIDCWSGIMiddleware
    browser: Browser


@pytest.fixture(params=["asgi", "wsgi"])
def app(request: pytest.FixtureRequest, world: World) -> Iterator[App]:
    shell = str(request.param)
    path = write_config(world)
    with ExitStack() as stack:
        if shell == "asgi":
            middleware: OIDCMiddleware | OIDCWSGIMiddleware = OIDCMiddleware(catch_all_asgi, path)  # type: ignore[arg-type]
            client = stack.enter_context(TestClient(middleware, base_url=APP))
            transport: httpx.BaseTransport = client._transport
        else:
            middleware = OIDCWSGIMiddleware(catch_all_wsgi, path)
            transport = httpx.WSGITransport(app=middleware)
        browser = Browser(Stack(world.idp, path, {shell: transport}), shell)
        stack.callback(browser.http.close)
        yield App(middleware, browser)


HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


def test_admins_in_others_refused_anonymous_asked_to_log_in(app: App) -> None:
    browser = app.browser
    anonymous_page = browser.get("/admin/users", headers=HTML)
    assert anonymous_page.status_code == 302
    assert anonymous_page.headers["location"].startswith("/oidc/login")
    assert browser.get("/admin/users", headers=JSON).status_code == 401
    browser.log_in("/profile", login="bob")
    assert browser.get("/profile").status_code == 200  # signed in is enough there
    refused = browser.get("/admin/users", headers=HTML)
    assert refused.status_code == 403
    assert "Not allowed" in refused.text
    assert 'action="/oidc/logout"' in refused.text, "a way to sign in as someone else"
    assert "protected content" not in refused.text
    api = browser.get("/admin/users", headers=JSON)
    assert api.status_code == 403
    assert api.json() == {"error": "forbidden", "missing": ["admin"], "kind": "role"}
    browser.http.cookies.clear()
    browser.log_in("/admin/users", login="alice")
    assert browser.get("/admin/users", headers=JSON).json()["user"] == "alice"


def client_token(world: World, scope: str) -> str:
    answer = httpx.post(
        world.idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API, "scope": scope},
        auth=("web", SECRET),
    )
    token: str = answer.json()["access_token"]
    return token


def test_bearer_tokens_get_rfc_6750_answers(app: App, world: World) -> None:
    read_only = {"Authorization": f"Bearer {client_token(world, 'api:read')}", **JSON}
    writer = {"Authorization": f"Bearer {client_token(world, 'api:read api:write')}", **JSON}
    browser = app.browser
    assert browser.get("/api/things", headers=read_only).status_code == 200, "GET: no rule"
    refused = browser.post("/api/things", headers=read_only)
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="api:write"'
    )
    assert browser.post("/api/things", headers=writer).status_code == 200
    admin_only = browser.get("/admin/x", headers=writer)
    assert admin_only.status_code == 403, "the service account is no admin"
    assert admin_only.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


def test_a_rule_changed_in_the_file_applies_on_reload(app: App, world: World) -> None:
    browser = app.browser
    browser.log_in("/profile", login="bob")
    assert browser.get("/admin/users", headers=JSON).status_code == 403
    write_config(world, RULES.replace('roles = ["admin"]', 'any-role = ["admin", "user"]'))
    assert app.middleware.reload()
    assert browser.get("/admin/users", headers=JSON).status_code == 200, "no restart needed"
