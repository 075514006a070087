"""The policy enforcer (adapter/web/_enforcer.py) against the real test identity server and its
Keycloak Authorization Services stand-in (tests/idp/authorization.mjs), in both shells: a
keycloak.json whose ``policy-enforcer`` block is docs/authorization.md's (Keycloak's
documentation example), resources and grants as the guide's bank example: alice may view and
delete an account, bob only view it.

Counted in the server's log: the UMA grants (``uma.grant``) and the Protection API look-ups
(``uma.protection``) each request caused."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, current_identity
from tests.app_server import answer_lifespan
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, code_flow_token, web_client

SECRET = "bank-app-secret-" + "b" * 40
UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"
VIEW, CREATE = "urn:app.com:scopes:view", "urn:app.com:scopes:create"
AUTHORIZATION = {
    "resources": [
        {"name": "Users", "uris": ["/users/*"], "scopes": [VIEW, CREATE]},
        {"name": "Bank Account", "uris": ["/account/{id}"], "scopes": ["view", "delete"]},
        {"name": "Statements", "uris": ["/statements/*"], "scopes": ["view"]},
    ],
    "grants": {
        "alice": ["Bank Account#view", "Bank Account#delete", f"Users#{VIEW}", "Statements"],
        "bob": ["Bank Account#view"],
    },
}
# docs/authorization.md's block (Keycloak's documentation example).
ENFORCER: dict[str, Any] = {
    "enforcement-mode": "ENFORCING",
    "paths": [
        {
            "path": "/users/*",
            "methods": [
                {"method": "GET", "scopes": [VIEW]},
                {"method": "POST", "scopes": [CREATE]},
            ],
        },
        {
            "name": "Bank Account",
            "path": "/account/{id}",
            "methods": [
                {"method": "DELETE", "scopes": ["delete"]},
                {"method": "GET", "scopes": ["view"]},
            ],
        },
        {"path": "/public/*", "enforcement-mode": "DISABLED"},
    ],
}
GRANT = '"event":"uma.grant"'
LOOKUP = '"event":"uma.protection","action":"resource_set.list"'
JSON = {"Accept": "application/json"}


def bank_server(directory: Path, authorization: dict[str, Any] = AUTHORIZATION) -> IdentityServer:
    """The test identity server of realm ``bank`` with the bank-app client and ``authorization``
    (resources and grants) for its Authorization Services stand-in; started by ``with``."""
    return IdentityServer(
        [web_client(SECRET, client_id="bank-app")],
        tmp_dir=directory,
        issuer="http://127.0.0.1:{port}/realms/bank",
        authorization=authorization,
    )


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    with bank_server(tmp_path_factory.mktemp("enforcer")) as server:
        yield server


def keycloak_json(directory: Path, idp: IdentityServer, block: dict[str, Any]) -> Path:
    base, _, realm = idp.issuer.rpartition("/realms/")
    document = {
        "realm": realm,
        "auth-server-url": base + "/",
        "resource": "bank-app",
        "credentials": {"secret": SECRET},
        # The test server's access tokens are for its API; Keycloak's adapters did not check.
        "verify-token-audience": False,
        "policy-enforcer": block,
    }
    path = directory / "keycloak.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


def echo_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    identity = current_identity(environ)
    body = {
        "user": identity.display_name if identity else None,
        "permissions": [[p.rsname, list(p.scopes)] for p in identity.permissions]
        if identity
        else [],
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


async def echo_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    identity = current_identity(scope)
    body = json.dumps({"user": identity.display_name if identity else None}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@dataclass
class App:
    browser: Browser
    middleware: OIDCMiddleware | OIDCWSGIMiddleware


@pytest.fixture
def make_app(idp: IdentityServer, tmp_path: Path) -> Iterator[Callable[..., App]]:
    with ExitStack() as stack:
        made = 0

        def make(shell: str = "wsgi", block: dict[str, Any] | None = None) -> App:
            nonlocal made
            made += 1
            directory = tmp_path / f"app{made}"
            directory.mkdir()
            path = keycloak_json(directory, idp, ENFORCER if block is None else block)
            if shell == "asgi":
                middleware: OIDCMiddleware | OIDCWSGIMiddleware = OIDCMiddleware(echo_asgi, path)
                client = stack.enter_context(TestClient(middleware, base_url=APP))
                transport: httpx.BaseTransport = client._transport
            else:
                middleware = OIDCWSGIMiddleware(echo_wsgi, path)
                transport = httpx.WSGITransport(app=middleware)
                stack.callback(middleware.close)
            browser = Browser(Stack(idp, path, {shell: transport}), shell)
            stack.callback(browser.http.close)
            return App(browser, middleware)

        yield make


def count(idp: IdentityServer, text: str) -> int:
    return idp.settled_logs().count(text)


# -- sessions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_a_session_passes_where_its_grants_allow_and_gets_403_where_not(
    make_app: Callable[..., App], shell: str
) -> None:
    bob = make_app(shell).browser
    assert bob.log_in("/account/1", login="bob").status_code == 200, "bob may view"
    denied = bob.request("DELETE", "/account/1", headers=JSON)
    assert denied.status_code == 403, "bob may not delete"
    assert denied.json() == {
        "error": "forbidden",
        "missing": ["Bank Account#delete"],
        "kind": "permission",
    }
    assert bob.get(f"/users/{shell}", headers=JSON).status_code == 403, "no grant on Users"
    assert bob.get("/public/page").status_code == 200, "a DISABLED path"
    assert bob.get("/nowhere", headers=JSON).status_code == 403, "no resource: ENFORCING denies"
    alice = make_app(shell).browser
    assert alice.log_in("/account/1").status_code == 200
    assert alice.request("DELETE", "/account/1").status_code == 200
    assert alice.get("/users/list").status_code == 200
    assert alice.post("/users/new", headers=JSON).status_code == 403, "create: not granted"


@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_a_path_the_app_could_read_otherwise_is_refused(
    make_app: Callable[..., App], shell: str
) -> None:
    """``%2e%2e`` reaches the app as ``..``: the enforcer will not resolve it into the DISABLED
    ``/public/*`` while the app's own routing may serve ``/users/...`` for it."""
    bob = make_app(shell).browser
    assert bob.log_in("/account/1", login="bob").status_code == 200
    for path in ("/users/%2e%2e/public/x", "/users/x/%2E%2E/%2e%2e/public/x", "/public//x"):
        answer = bob.get(path, headers=JSON)
        assert answer.status_code == 400, (path, answer.text)


def test_a_session_grant_is_asked_once_per_resource_and_scope(
    idp: IdentityServer, make_app: Callable[..., App]
) -> None:
    alice = make_app().browser
    assert alice.log_in("/account/1").status_code == 200
    before = count(idp, GRANT)
    for _ in range(3):
        assert alice.get("/account/1").status_code == 200
        assert alice.get("/account/2").status_code == 200, "the same resource and scope"
    assert count(idp, GRANT) == before, "remembered since the first request"
    assert alice.request("DELETE", "/account/1").status_code == 200
    assert count(idp, GRANT) == before + 1, "another scope: asked once"


def test_an_unknown_path_passes_under_permissive(make_app: Callable[..., App]) -> None:
    bob = make_app(block={**ENFORCER, "enforcement-mode": "PERMISSIVE"}).browser
    assert bob.log_in("/nowhere", login="bob").status_code == 200
    assert bob.request("DELETE", "/account/1").status_code == 403, "known paths still enforced"


def test_a_denied_browser_is_sent_to_on_deny_redirect_to(make_app: Callable[..., App]) -> None:
    block = {**ENFORCER, "on-deny-redirect-to": "/access-denied"}
    bob = make_app(block=block).browser
    assert bob.log_in("/account/1", login="bob").status_code == 200
    denied = bob.get("/users/list", headers={"Accept": "text/html"})
    assert denied.status_code == 302
    assert denied.headers["location"] == "/access-denied"
    assert bob.get("/access-denied").status_code == 200, "the deny page itself is let through"
    scripted = bob.request("DELETE", "/account/1")
    assert scripted.status_code == 403, "not redirected: the browser would repeat the DELETE"


def test_http_method_as_scope(idp: IdentityServer, tmp_path: Path) -> None:
    """A method without a ``methods[]`` entry needs its own name as the scope."""
    block = {
        "http-method-as-scope": True,
        "paths": [{"name": "Statements", "path": "/statements/*"}],
    }
    resources = [{"name": "Statements", "uris": ["/statements/*"], "scopes": ["GET", "POST"]}]
    grants = {"alice": ["Statements#GET"]}
    with bank_server(tmp_path, {"resources": resources, "grants": grants}) as server:
        path = keycloak_json(tmp_path, server, block)
        middleware = OIDCWSGIMiddleware(echo_wsgi, path)
        browser = Browser(
            Stack(server, path, {"wsgi": httpx.WSGITransport(app=middleware)}), "wsgi"
        )
        assert browser.log_in("/statements/2026").status_code == 200
        assert browser.post("/statements/2026", headers=JSON).status_code == 403
        asked = [line for line in server.settled_logs().splitlines() if GRANT in line]
        middleware.close()
    assert any("#GET" in line for line in asked)
    assert any("#POST" in line for line in asked)


def test_lazy_loaded_paths_are_looked_up_once_per_path_cache_lifespan(
    idp: IdentityServer, make_app: Callable[..., App]
) -> None:
    block = {"lazy-load-paths": True, "path-cache": {"max-entries": 100, "lifespan": 600000}}
    app = make_app(block=block)
    alice = app.browser
    before = count(idp, LOOKUP)
    assert alice.log_in("/statements/2026").status_code == 200
    for _ in range(3):
        assert alice.get("/statements/2026").status_code == 200
    looked_up = [
        line for line in idp.settled_logs().splitlines() if LOOKUP in line and "/statements" in line
    ]
    assert len(looked_up) == 1, looked_up
    assert count(idp, LOOKUP) - before == 1, "one path, one look-up"
    bob = make_app(block=block).browser
    assert bob.log_in("/statements/2026", login="bob").status_code == 403


def test_lazy_loading_looks_up_each_path_once(
    idp: IdentityServer, make_app: Callable[..., App]
) -> None:
    """Two paths of one server resource: two look-ups (each path is asked for), then none."""
    block = {"lazy-load-paths": True, "path-cache": {"max-entries": 100, "lifespan": 600000}}
    alice = make_app(block=block).browser
    assert alice.log_in("/statements/a").status_code == 200
    before = count(idp, LOOKUP)
    for _ in range(2):
        assert alice.get("/statements/b").status_code == 200
        assert alice.get("/statements/a").status_code == 200
    assert count(idp, LOOKUP) - before == 1, "only /statements/b was new"


# -- bearer tokens -------------------------------------------------------------------------------


def user_token(idp: IdentityServer, login: str) -> str:
    """An access token of ``login`` for bank-app, through the real code flow (PKCE)."""
    return code_flow_token(idp, login, "bank-app", SECRET)


def uma_grant(idp: IdentityServer, token: str, data: list[tuple[str, str]]) -> httpx.Response:
    """A UMA grant request (``grant_type`` uma-ticket, then ``data``) to the server's token
    endpoint, with ``token`` as its bearer credential."""
    return httpx.post(
        idp.metadata["token_endpoint"],
        content=urlencode([("grant_type", UMA), *data]),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def rpt(idp: IdentityServer, token: str, *permissions: str) -> str:
    data = [("audience", "bank-app")]
    data += [("permission", permission) for permission in permissions]
    answer = uma_grant(idp, token, data)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def tokens(idp: IdentityServer) -> dict[str, str]:
    return {login: user_token(idp, login) for login in ("alice", "bob")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_an_rpt_that_covers_the_request_passes_without_a_call(
    idp: IdentityServer, make_app: Callable[..., App], tokens: dict[str, str], shell: str
) -> None:
    token = rpt(idp, tokens["alice"], "Bank Account#delete")
    http = make_app(shell).browser
    before = count(idp, GRANT)
    assert http.request("DELETE", "/account/7", headers=bearer(token)).status_code == 200
    assert count(idp, GRANT) == before, "the RPT's permissions cover it: nothing asked"


@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_a_plain_token_asks_one_grant_and_the_second_request_none(
    idp: IdentityServer, make_app: Callable[..., App], tokens: dict[str, str], shell: str
) -> None:
    http = make_app(shell).browser
    before = count(idp, GRANT)
    assert http.get("/account/7", headers=bearer(tokens["bob"])).status_code == 200
    assert count(idp, GRANT) == before + 1, "one grant"
    assert http.get("/account/7", headers=bearer(tokens["bob"])).status_code == 200
    assert count(idp, GRANT) == before + 1, "the second identical request: none"
    denied = http.request("DELETE", "/account/7", headers=bearer(tokens["bob"]))
    assert denied.status_code == 403
    assert denied.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


def test_concurrent_requests_with_one_new_token_share_one_grant(
    idp: IdentityServer, make_app: Callable[..., App]
) -> None:
    """Eight threads at once (a WSGI server's), one new token and path: one grant asked."""
    token = user_token(idp, "bob")
    http = make_app().browser
    before = count(idp, GRANT)
    start = threading.Barrier(8)

    def call(_: int) -> int:
        start.wait()
        return http.get("/account/4", headers=bearer(token)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(8)))
    assert statuses == [200] * 8
    assert count(idp, GRANT) == before + 1, "one grant in flight, shared"


def test_the_grant_names_the_caller_as_subject_token_for_a_bearer_request(
    idp: IdentityServer, make_app: Callable[..., App], tokens: dict[str, str]
) -> None:
    http = make_app().browser
    assert http.get("/users/x", headers=bearer(tokens["alice"])).status_code == 200
    line = [line for line in idp.settled_logs().splitlines() if GRANT in line][-1]
    assert '"via":"client"' in line, "client authentication with subject_token, as Keycloak"
    assert '"response_mode":"decision"' in line


def test_enforcer_grant_permissions_fills_identity_permissions(
    tokens: dict[str, str], idp: IdentityServer, tmp_path: Path
) -> None:
    """The native format's block, and ``enforcer-grant = "permissions"``: the granted scopes
    reach the app as ``identity.permissions``."""
    toml = tmp_path / "adapter.toml"
    toml.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "bank-app"\nenforcer-grant = "permissions"\n'
        "verify-token-audience = false\n"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    toml.chmod(0o600)
    with toml.open("a") as out:
        out.write(
            '[policy-enforcer]\n[[policy-enforcer.paths]]\nname = "Bank Account"\n'
            'path = "/account/{id}"\n'
            'methods = [{ method = "GET", scopes = ["view"] }]\n'
        )
    middleware = OIDCWSGIMiddleware(echo_wsgi, toml)
    with httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url=APP) as http:
        answer = http.get("/account/3", headers=bearer(tokens["alice"]))
    middleware.close()
    assert answer.status_code == 200
    assert answer.json()["permissions"] == [["Bank Account", ["view"]]]


def test_user_managed_access_answers_a_uma_ticket(
    idp: IdentityServer, make_app: Callable[..., App], tokens: dict[str, str]
) -> None:
    http = make_app(block={**ENFORCER, "user-managed-access": {}}).browser
    before = count(idp, GRANT)
    denied = http.request("DELETE", "/account/7", headers=bearer(tokens["bob"]))
    assert denied.status_code == 401
    challenge = denied.headers["www-authenticate"]
    assert challenge.startswith(f'UMA realm="bank", as_uri="{idp.issuer}", ticket="')
    ticket = challenge.split('ticket="', 1)[1].rstrip('"')
    logs = idp.settled_logs()
    assert '"action":"permission"' in logs, "the ticket came from the permission endpoint"
    assert logs.count(GRANT) == before, "no grant asked under user-managed access"
    # The ticket is the server's: exchanged for an RPT by a user it grants (alice), refused
    # for one it does not (bob).
    exchange = uma_grant(idp, tokens["alice"], [("ticket", ticket)])
    assert exchange.status_code == 200, exchange.text


def test_the_identity_server_down_is_a_503_never_a_pass(tmp_path: Path) -> None:
    with bank_server(tmp_path) as server:
        token = user_token(server, "alice")
        path = keycloak_json(tmp_path, server, ENFORCER)
        middleware = OIDCWSGIMiddleware(echo_wsgi, path)
        http = httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url=APP)
        assert http.get("/account/1", headers=bearer(token)).status_code == 200
    answer = http.request("DELETE", "/account/1", headers=bearer(token))
    http.close()
    middleware.close()
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
