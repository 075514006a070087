"""The framework idioms against the real identity server, on the examples: Starlette's
``@require``, FastAPI's ``Depends(require(...))`` and Flask's ``@oidc.require``.

For each: ``/admin`` (role admin, enforced by the idiom: the configuration has no
``[[access]]`` rule) lets alice in, refuses bob with 403, sends anonymous users to log in (or
401), with a session and with a bearer token from the server. FastAPI's OpenAPI document names
the server's discovery URL and its Swagger page signs in with PKCE, locally served. The apps
run in-process (tests/web_client.py); tests/e2e/test_frameworks_browser.py repeats the journey
in Chromium.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, cast

import httpx
import pytest
from fastapi import Depends, FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDisconnect
from starlette.websockets import WebSocket

from adapter import Identity, OIDCMiddleware
from adapter.integrations.fastapi import require as fastapi_require
from adapter.integrations.flask import OIDC
from adapter.integrations.starlette import require
from adapter.web._guard import MiddlewareMissing
from adapter.wsgi import OIDCWSGIMiddleware
from examples.fastapi_app.app import create_app as create_fastapi_app
from examples.flask_app.app import create_app as create_flask_app
from examples.flask_app.app import create_app_behind_proxy
from examples.starlette_app.app import create_app as create_starlette_app
from tests.app_server import free_port
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, code_flow_token, web_client

SECRET = "frameworks-client-secret-" + "f" * 40
SESSION_SECRET = "frameworks-session-secret-" + "s" * 24
API = "urn:oidc-adapter:test-api"
DOCS = "docs"  # Swagger UI's public client (PKCE, no secret)
DOCS_REDIRECT = f"{APP}/docs/oauth2-redirect"
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}
FRAMEWORKS = ["starlette", "fastapi", "flask"]
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    web = web_client(SECRET)
    docs = {
        "client_id": DOCS,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [DOCS_REDIRECT],
    }
    directory = tmp_path_factory.mktemp("frameworks-idp")
    with IdentityServer([web, docs], tmp_dir=directory, accounts=ACCOUNTS) as server:
        yield server


def write_config(directory: Path, idp: IdentityServer, public: list[str]) -> Path:
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\npublic-paths = {json.dumps(public)}\n'
        f'scope = "openid profile email roles"\nsession-secret = "{SESSION_SECRET}"\n'
        f'token-audiences = ["{API}"]\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


def make_app(framework: str, config: Path, stack: ExitStack) -> httpx.BaseTransport:
    """The example app of ``framework`` in-process, behind the transport a Browser uses."""
    if framework == "flask":
        return httpx.WSGITransport(app=create_flask_app(config))
    app: Any = (
        create_starlette_app(config) if framework == "starlette" else create_fastapi_app(config)
    )
    client = stack.enter_context(TestClient(app, base_url=APP))
    transport: httpx.BaseTransport = client._transport
    return transport


@pytest.fixture(scope="module")
def transports(
    idp: IdentityServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, httpx.BaseTransport]]]:
    config = write_config(
        tmp_path_factory.mktemp("frameworks"), idp, ["/", "/docs", "/openapi.json"]
    )
    with ExitStack() as stack:
        yield config, {name: make_app(name, config, stack) for name in FRAMEWORKS}


@pytest.fixture(params=FRAMEWORKS)
def browser(
    request: pytest.FixtureRequest,
    idp: IdentityServer,
    transports: tuple[Path, dict[str, httpx.BaseTransport]],
) -> Iterator[Browser]:
    config, apps = transports
    b = Browser(Stack(idp, config, apps), str(request.param))
    yield b
    b.http.close()


def user_token(idp: IdentityServer, login: str, scope: str = "openid") -> str:
    """An access token for ``login``, as Swagger UI gets one: the code flow with PKCE for the
    public ``docs`` client, through the server's own login and consent forms."""
    return code_flow_token(idp, login, DOCS, redirect_uri=DOCS_REDIRECT, scope=scope)


def client_token(idp: IdentityServer, scope: str) -> str:
    """The app's own service-account token (``realm_access.roles = ["service-account"]``)."""
    answer = httpx.post(
        idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API, "scope": scope},
        auth=("web", SECRET),
    )
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


# --- the admin route, per framework --------------------------------------------------------------


def test_admin_route_with_a_session(browser: Browser) -> None:
    anonymous = browser.get("/admin", headers=HTML)
    assert anonymous.status_code == 302
    assert anonymous.headers["location"] == "/oidc/login?next=%2Fadmin"
    assert browser.get("/admin", headers=JSON).status_code == 401

    back = browser.walk(anonymous, login="bob")
    assert str(back.url) == f"{APP}/admin", "bob is signed in and back at /admin"
    assert back.status_code == 403, "the idiom refuses: no [[access]] rule is configured"
    bob = browser.get("/admin", headers=HTML)
    assert bob.status_code == 403
    assert bob.headers["content-type"] == "text/html; charset=utf-8"
    assert "Not allowed" in bob.text
    assert 'action="/oidc/logout"' in bob.text, "a way to sign in as someone else"
    assert browser.csrf() in bob.text, "the sign-out button carries the session's CSRF token"
    assert "admin-area" not in bob.text
    api = browser.get("/admin", headers=JSON)
    assert api.status_code == 403
    assert api.json() == {"error": "forbidden", "missing": ["admin"], "kind": "role"}
    assert browser.get("/profile").status_code == 200, "signed in is enough there"

    browser.http.cookies.clear()
    alice = browser.log_in("/admin", login="alice")
    assert alice.status_code == 200
    assert "<p id='admin-area'>alice</p>" in alice.text


def test_admin_route_with_a_bearer_token(browser: Browser, idp: IdentityServer) -> None:
    assert browser.get("/admin", headers=JSON).status_code == 401
    invalid = browser.get("/admin", headers=bearer("not-a-token"))
    assert invalid.status_code == 401
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]

    alice = browser.get("/admin", headers=bearer(user_token(idp, "alice")))
    assert alice.status_code == 200
    assert "<p id='admin-area'>alice</p>" in alice.text

    bob = browser.get("/admin", headers=bearer(user_token(idp, "bob")))
    assert bob.status_code == 403
    assert bob.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert "admin-area" not in bob.text

    service = browser.get("/admin", headers=bearer(client_token(idp, "api:read")))
    assert service.status_code == 403, "the service account holds no admin role"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_public_path_reaches_the_idiom_which_answers_401(
    framework: str, idp: IdentityServer, tmp_path: Path
) -> None:
    """An operator made /admin public by mistake: the idiom still refuses anonymous users,
    with the middleware's challenge (its realm: the client id)."""
    config = write_config(tmp_path, idp, ["/", "/admin"])
    with ExitStack() as stack:
        http = httpx.Client(transport=make_app(framework, config, stack), base_url=APP)
        stack.callback(http.close)
        refused = http.get("/admin", headers=HTML)
        assert refused.status_code == 401
        assert "admin-area" not in refused.text
        realm = "" if framework == "starlette" else ' realm="web"'  # no config in a decorator
        assert refused.headers["www-authenticate"] == f"Bearer{realm}"
        assert http.get("/admin", headers=bearer(user_token(idp, "alice"))).status_code == 200


def test_sync_endpoints_websockets_and_async_views(
    idp: IdentityServer, transports: tuple[Path, dict[str, httpx.BaseTransport]]
) -> None:
    """The other endpoint shapes: a sync Starlette endpoint, a Starlette websocket (closed with
    1008 when refused), an async Flask view."""
    config = transports[0]
    alice, bob = bearer(user_token(idp, "alice")), bearer(user_token(idp, "bob"))

    @require(roles=["admin"])
    def sync_page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("admin-area")

    @require(roles=["admin"])
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("admin-area")
        await websocket.close()

    starlette_app = Starlette(routes=[Route("/sync", sync_page), WebSocketRoute("/socket", socket)])
    with TestClient(OIDCMiddleware(starlette_app, config), base_url=APP) as client:
        assert client.get("/sync", headers=alice).text == "admin-area"
        assert client.get("/sync", headers=bob).status_code == 403
        with client.websocket_connect("/socket", headers=alice) as connection:
            assert connection.receive_text() == "admin-area"
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/socket", headers=bob) as connection,
        ):
            connection.receive_text()
        assert closed.value.code == 1008

    flask_app = Flask(__name__)
    oidc = OIDC(flask_app, config=config)

    @flask_app.get("/async")
    @oidc.require(roles=["admin"])
    async def async_view() -> str:
        return "admin-area"

    client = flask_app.test_client()
    assert client.get("/async", headers=alice).text == "admin-area"
    assert client.get("/async", headers=bob).status_code == 403


# --- FastAPI: scopes, OpenAPI, Swagger UI ------------------------------------------------------


def fastapi_client(transports: tuple[Path, dict[str, httpx.BaseTransport]]) -> httpx.Client:
    return httpx.Client(transport=transports[1]["fastapi"], base_url=APP)


def test_scopes_with_depends_and_with_security(
    idp: IdentityServer, transports: tuple[Path, dict[str, httpx.BaseTransport]]
) -> None:
    with fastapi_client(transports) as http:
        reader = bearer(client_token(idp, "api:read"))
        assert http.get("/api/reports", headers=reader).status_code == 200
        writer = bearer(client_token(idp, "api:write"))
        refused = http.get("/api/reports", headers=writer)
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="api:read"'
        )
        assert refused.json() == {"error": "forbidden", "missing": ["api:read"], "kind": "scope"}

        # DELETE: Security(require(roles=["admin"]), scopes=["api:write"]): both are needed.
        alice_reader = bearer(user_token(idp, "alice", "openid api:read"))
        missing = http.delete("/api/reports/7", headers=alice_reader)
        assert missing.status_code == 403
        assert 'scope="api:write"' in missing.headers["www-authenticate"]
        alice_writer = bearer(user_token(idp, "alice", "openid api:write"))
        deleted = http.delete("/api/reports/7", headers=alice_writer)
        assert deleted.status_code == 200
        assert deleted.json() == {"deleted": 7, "by": "alice"}
        bob_writer = bearer(user_token(idp, "bob", "openid api:write"))
        assert http.delete("/api/reports/7", headers=bob_writer).status_code == 403


def test_openapi_offers_only_the_code_flow_with_the_apis_scopes(
    idp: IdentityServer, transports: tuple[Path, dict[str, httpx.BaseTransport]]
) -> None:
    """Swagger UI's "Authorize" (issue 21, item 7): not the server's every grant (its implicit
    flow fails with unsupported_response_type) but the code flow alone (PKCE: initOAuth, see
    the next test), offering every scope the routes ask for, api:write too."""
    with fastapi_client(transports) as http:
        document = http.get("/openapi.json").json()  # public: Swagger UI loads it anonymously
    discovery = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert "implicit" in discovery["grant_types_supported"], "what openIdConnect would offer"
    assert document["components"]["securitySchemes"] == {
        "oidc": {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": discovery["authorization_endpoint"],
                    "tokenUrl": discovery["token_endpoint"],
                    "scopes": {"api:read": "", "api:write": "", "openid": ""},
                }
            },
        }
    }
    paths = document["paths"]
    assert paths["/admin"]["get"]["security"] == [{"oidc": []}]
    assert paths["/api/reports"]["get"]["security"] == [{"oidc": []}]
    assert paths["/api/reports/{report_id}"]["delete"]["security"] == [{"oidc": ["api:write"]}]
    assert "security" not in paths["/"]["get"], "the public page needs no sign-in"


def test_openapi_keeps_the_discovery_url_while_the_server_is_unreachable(
    tmp_path: Path,
) -> None:
    """No endpoints known yet: the openIdConnect scheme (Swagger UI reads discovery itself);
    the next request for the document tries again."""
    unreachable = SimpleNamespace(issuer=f"http://127.0.0.1:{free_port()}")  # nothing listens
    config = write_config(tmp_path, cast(IdentityServer, unreachable), ["/openapi.json"])
    with TestClient(create_fastapi_app(config, "docs"), base_url=APP) as http:
        document = http.get("/openapi.json").json()
    discovery = f"{unreachable.issuer}/.well-known/openid-configuration"
    assert document["components"]["securitySchemes"] == {
        "oidc": {"type": "openIdConnect", "openIdConnectUrl": discovery}
    }


def test_swagger_page_signs_in_with_pkce_from_local_files(
    transports: tuple[Path, dict[str, httpx.BaseTransport]],
) -> None:
    with fastapi_client(transports) as http:
        page = http.get("/docs", headers=HTML)
        assert page.status_code == 200, "the docs are public"
        init = json.loads(page.text.split("ui.initOAuth(", 1)[1].split(")", 1)[0])
        assert init == {
            "clientId": DOCS,
            "usePkceWithAuthorizationCodeGrant": True,
            "scopes": "openid api:read",
        }
        assert "cdn.jsdelivr.net" not in page.text, "Swagger UI's files are served here"
        for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
            assert asset in page.text
            assert http.get(asset).status_code == 200
        redirect = http.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200
        assert "swaggerUIRedirectOauth2" in redirect.text


# --- without the middleware, without the extra ------------------------------------------------


def test_without_the_middleware_the_idioms_refuse_loudly() -> None:
    @require(roles=["admin"])
    async def secret(request: Request) -> PlainTextResponse:
        return PlainTextResponse("secret")

    with (
        TestClient(Starlette(routes=[Route("/", secret)])) as client,
        pytest.raises(MiddlewareMissing, match=r"OIDCMiddleware\(app, config\)"),
    ):
        client.get("/")

    api = FastAPI()

    @api.get("/")
    def fastapi_secret(user: Annotated[Identity, Depends(fastapi_require(roles=["admin"]))]) -> str:
        return "secret"

    with (
        TestClient(api) as client,
        pytest.raises(
            MiddlewareMissing, match=r"adapter\.integrations\.fastapi\.OIDC\(app, config=\.\.\.\)"
        ),
    ):
        client.get("/")

    oidc = OIDC(config="never-read.toml")  # an extension never installed on an app
    flask_app = Flask(__name__)

    @flask_app.get("/")
    @oidc.require(roles=["admin"])
    def flask_secret() -> str:
        return "secret"

    flask_app.testing = True
    with pytest.raises(MiddlewareMissing, match=r"oidc\.init_app\(app\)"):
        flask_app.test_client().get("/")


@pytest.mark.parametrize(("module", "extra"), [("fastapi", "fastapi"), ("flask", "flask")])
def test_a_missing_framework_names_the_extra(module: str, extra: str) -> None:
    hide = f"import sys; sys.modules[{module!r}] = None; import adapter.integrations.{module}"
    result = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    framework = "FastAPI" if extra == "fastapi" else "Flask"
    assert last == (
        f"ImportError: adapter.integrations.{module} needs {framework}; "
        f"install the extra: pip install 'oidc-adapter[{extra}]'"
    )


def test_flask_extension_registers_once_and_keeps_the_factories(
    transports: tuple[Path, dict[str, httpx.BaseTransport]],
) -> None:
    config = transports[0]
    app = create_flask_app(config)
    oidc = app.extensions["oidc"]
    assert isinstance(oidc, OIDC)
    installed = app.wsgi_app
    assert isinstance(installed, OIDCWSGIMiddleware)
    oidc.init_app(app)
    assert app.wsgi_app is installed, "a second init_app wraps nothing twice"
    assert oidc.middleware(app) is installed
    proxied = create_app_behind_proxy(config)
    assert isinstance(proxied.extensions["oidc"], OIDC)
