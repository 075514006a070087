"""``[[access]]`` rules cannot be walked around (issue 19), against the real identity server:

- a method in any case (``delete``, ``dElEtE``), sent as raw bytes to a real uvicorn (h11) or
  wsgiref socket in front of Starlette, Django (ASGI and WSGI) and Flask: 403 for bob, and the
  handler never runs; a rule naming GET covers HEAD;
- a rule under a public prefix: anonymous and junk-cookie requests are refused (401 or the login
  redirect), never let through, in both shells, on the shortcut and the full path;
- a bearer token with a JSON-array ``aud`` is accepted every time, not only the first;
- a preflight that carries a remembered cookie reaches the app without an identity;
- an answer for a signed-in user is marked ``Cache-Control: private`` (``Vary: Cookie``).
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, current_identity
from adapter.jose import encode_header, make_signer, sign_compact
from tests.app_server import serve
from tests.django_site import django_directory
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, signing_key, web_client

SECRET = "airtight-client-secret-" + "a" * 40
SESSION_SECRET = "airtight-session-secret-" + "s" * 24
ACCOUNTS = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "bob": {"realm_access": {"roles": ["user"]}},
}
# docs/configuration.md's example rules, a rule that names GET only, and one under a public path.
RULES = """
[[access]]
path = "/admin/*"
roles = ["admin"]

[[access]]
path = "/api/*"
methods = ["POST", "PUT", "DELETE"]
scopes = ["api:write"]

[[access]]
path = "/reports/*"
methods = ["GET"]
roles = ["admin"]

[[access]]
path = "/public/admin/*"
roles = ["admin"]
"""
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


@dataclass
class World:
    idp: IdentityServer
    directory: Path
    server_key: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("airtight")
    server_key, jwk = signing_key()
    web = web_client(SECRET)
    with IdentityServer([web], tmp_dir=directory, accounts=ACCOUNTS, jwks={"keys": [jwk]}) as idp:
        yield World(idp, directory, server_key)


def write_config(world: World, extra: str = "") -> Path:
    path = world.directory / f"adapter-{secrets.token_hex(4)}.toml"
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web"\npublic-paths = ["/public"]\n'
        f'scope = "openid profile email roles"\nsession-secret = "{SESSION_SECRET}"\n'
        f"{extra}\n{RULES}\n"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


# --- the apps: each records the handlers that ran ---------------------------------------------

RAN: list[str] = []


async def starlette_handler(request: Request) -> PlainTextResponse:
    RAN.append(f"starlette {request.method} {request.url.path}")
    return PlainTextResponse("handler ran")


STARLETTE = Starlette(
    routes=[
        Route("/api/items/{n}", starlette_handler, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/reports/{n}", starlette_handler, methods=["GET"]),
        Route("/profile", starlette_handler),
    ]
)


def django_view(request: Any, n: int = 0) -> Any:
    from django.http import HttpResponse

    RAN.append(f"django {request.method} {request.path}")
    return HttpResponse("handler ran")


urlpatterns: list[Any] = []  # Django's, for this module (ROOT_URLCONF while the test runs)


def flask_app() -> Any:
    from flask import Flask
    from flask import request as flask_request

    app = Flask(__name__)

    @app.route("/api/items/<int:n>", methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/reports/<int:n>", methods=["GET"])
    def handler(n: int) -> str:
        RAN.append(f"flask {flask_request.method} {flask_request.path}")
        return "handler ran"

    return app.wsgi_app


def session_cookie(world: World, config: Path, login: str) -> str:
    """A signed-in session's cookie header (a cookie session opens in any app of this config)."""
    middleware = OIDCMiddleware(STARLETTE, config)
    with TestClient(middleware, base_url=APP) as client:
        browser = Browser(Stack(world.idp, config, {"asgi": client._transport}), "asgi")
        browser.log_in("/profile", login=login)
        cookies = browser.session_cookies()
        browser.http.close()
    assert cookies, f"{login} signed in"
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def raw_request(url: str, method: str, path: str, cookie: str | None = None) -> tuple[int, bytes]:
    """Send the request line exactly as given (a lower-case method stays lower case); HTTP/1.0,
    so the answer is not chunked."""
    where = urlsplit(url)
    assert where.hostname is not None
    assert where.port is not None
    lines = [f"{method} {path} HTTP/1.0", f"Host: {where.netloc}", "Accept: application/json"]
    lines += [f"Cookie: {cookie}"] if cookie else []
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    with socket.create_connection((where.hostname, where.port), timeout=10) as connection:
        connection.sendall("\r\n".join(lines).encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
def bob(world: World) -> str:
    return session_cookie(world, write_config(world), "bob")


@pytest.fixture(params=["starlette-asgi", "django-asgi", "django-wsgi", "flask-wsgi"])
def served(
    request: pytest.FixtureRequest, world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app behind the middleware on a real socket (uvicorn with h11, or wsgiref)."""
    kind = str(request.param)
    config = write_config(world)
    with ExitStack() as stack:
        if kind.startswith("django"):
            django_directory(tmp_path_factory)
            from django.test import override_settings
            from django.urls import path as django_path

            urlpatterns[:] = [
                django_path("api/items/<int:n>", django_view),
                django_path("reports/<int:n>", django_view),
            ]
            stack.enter_context(override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]))
        if kind == "starlette-asgi":
            url = stack.enter_context(serve("asgi", OIDCMiddleware(STARLETTE, config), http="h11"))
        elif kind == "django-asgi":
            from django.core.asgi import get_asgi_application

            app = OIDCMiddleware(get_asgi_application(), config)
            url = stack.enter_context(serve("asgi", app, http="h11", lifespan="off"))
        elif kind == "django-wsgi":
            from django.core.wsgi import get_wsgi_application

            url = stack.enter_context(
                serve("wsgi", OIDCWSGIMiddleware(get_wsgi_application(), config))
            )
        else:
            url = stack.enter_context(serve("wsgi", OIDCWSGIMiddleware(flask_app(), config)))
        RAN.clear()
        yield url


# --- 1 and 2: methods in any case; HEAD follows GET -------------------------------------------


@pytest.mark.parametrize("method", ["DELETE", "delete", "dElEtE", "put", "post"])
def test_a_rule_by_method_holds_whatever_the_case(served: str, bob: str, method: str) -> None:
    status, body = raw_request(served, method, "/api/items/1", bob)
    assert status == 403, body
    assert json.loads(body)["missing"] == ["api:write"]
    assert RAN == [], "the handler never runs for a user without the scope"
    status, _ = raw_request(served, "GET", "/api/items/1", bob)  # the rule names no GET
    assert status == 200
    assert len(RAN) == 1


@pytest.mark.parametrize("method", ["HEAD", "head", "GET", "get"])
def test_a_rule_naming_get_covers_head(served: str, bob: str, method: str) -> None:
    status, _ = raw_request(served, method, "/reports/7", bob)
    assert status == 403
    assert RAN == [], "the GET handler (which also answers HEAD) never runs"


# --- 3: a guarded path is never anonymous -------------------------------------------------------


@dataclass
class App:
    middleware: OIDCMiddleware | OIDCWSGIMiddleware
    browser: Browser


async def identity_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    identity = current_identity(scope)
    body = json.dumps({"user": identity.display_name if identity else None}).encode()
    user = (identity.display_name if identity else "anonymous").encode()
    # Who the app saw, in a header a preflight's answer keeps (Access-Control-*).
    headers = [(b"content-type", b"application/json"), (b"access-control-allow-headers", user)]
    for name, value in scope["headers"]:
        if name == b"x-app-headers":  # what the app itself sets, as JSON
            headers += [(k.encode(), v.encode()) for k, v in json.loads(value)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def identity_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    identity = current_identity(environ)
    user = identity.display_name if identity else "anonymous"
    headers = [("Content-Type", "application/json"), ("Access-Control-Allow-Headers", user)]
    headers += [tuple(h) for h in json.loads(environ.get("HTTP_X_APP_HEADERS", "[]"))]
    start_response("200 OK", headers)
    return [json.dumps({"user": identity.display_name if identity else None}).encode()]


def make_app(world: World, shell: str, extra: str = "") -> Iterator[App]:
    config = write_config(world, extra)
    with ExitStack() as stack:
        if shell == "asgi":
            middleware: OIDCMiddleware | OIDCWSGIMiddleware = OIDCMiddleware(identity_app, config)  # type: ignore[arg-type]
            client = stack.enter_context(TestClient(middleware, base_url=APP))
            transport: httpx.BaseTransport = client._transport
        else:
            middleware = OIDCWSGIMiddleware(identity_wsgi, config)
            transport = httpx.WSGITransport(app=middleware)
        browser = Browser(Stack(world.idp, config, {shell: transport}), shell)
        stack.callback(browser.http.close)
        yield App(middleware, browser)


@pytest.fixture(params=["asgi", "wsgi"])
def app(request: pytest.FixtureRequest, world: World) -> Iterator[App]:
    yield from make_app(world, str(request.param))


def test_a_rule_under_a_public_prefix_needs_its_identity(app: App) -> None:
    browser = app.browser
    assert browser.get("/public/page", headers=JSON).json() == {"user": None}  # still public
    for _ in range(2):  # the second time from the shortcuts' memory, if any
        assert browser.get("/public/admin/x", headers=JSON).status_code == 401
        page = browser.get("/public/admin/x", headers=HTML)
        assert page.status_code == 302
        assert page.headers["location"].startswith("/oidc/login")
        junk = browser.get("/public/admin/x", cookies={"oidc_session": "junk"}, headers=JSON)
        assert junk.status_code == 401
        bad_bearer = {"Authorization": "Bearer not-a-token", **JSON}
        assert browser.get("/public/admin/x", headers=bad_bearer).status_code == 401
    browser.log_in("/profile", login="bob")
    assert browser.get("/public/admin/x", headers=JSON).status_code == 403
    browser.http.cookies.clear()
    browser.log_in("/profile", login="alice")
    for _ in range(2):
        assert browser.get("/public/admin/x", headers=JSON).json() == {"user": "alice"}


def test_config_check_names_a_rule_over_a_public_path(world: World) -> None:
    import subprocess
    import sys

    config = write_config(world)
    run = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "config", "check", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.startswith("access:")]
    assert len(lines) == 1, run.stdout
    assert "/public/admin/*" in lines[0]
    assert "/public" in lines[0]
    assert "the rule wins" in lines[0]


# --- 4: a cached bearer token keeps its audience ------------------------------------------------


def forged_access_token(world: World, roles: list[str], audience: Any) -> str:
    """A well-signed access token from the server's own key (the test holds it)."""
    header = encode_header({"alg": "RS256", "kid": "server-1", "typ": "at+jwt"})
    now = int(time.time())
    claims = {
        "iss": world.idp.issuer, "sub": "svc", "aud": audience, "azp": "web",
        "client_id": "web", "iat": now, "exp": now + 300, "jti": secrets.token_hex(8),
        "realm_access": {"roles": roles}, "scope": "openid",
    }  # fmt: skip
    return sign_compact(header, claims, make_signer("RS256", world.server_key))


def test_a_bearer_token_with_an_audience_array_is_accepted_every_time(
    app: App, world: World
) -> None:
    token = forged_access_token(world, ["admin"], ["web", "urn:other-api"])
    headers = {"Authorization": f"Bearer {token}", **JSON}
    answers = [app.browser.get("/admin/users", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert app.browser.get("/elsewhere", headers=headers).status_code == 200  # remembered
    refused = forged_access_token(world, ["admin"], ["urn:other-api", "urn:third"])
    other = {"Authorization": f"Bearer {refused}", **JSON}
    assert [app.browser.get("/admin/x", headers=other).status_code for _ in range(2)] == [401] * 2


# --- 8: preflights never carry an identity ------------------------------------------------------


def test_a_preflight_with_a_remembered_cookie_carries_no_identity(app: App) -> None:
    browser = app.browser
    browser.log_in("/profile", login="alice")
    assert browser.get("/profile", headers=JSON).json() == {"user": "alice"}
    assert browser.get("/profile", headers=JSON).json() == {"user": "alice"}  # remembered now
    assert browser.get("/profile").headers["access-control-allow-headers"] == "alice"
    preflight = {
        "Origin": "https://other.example.com",
        "Access-Control-Request-Method": "DELETE",
        "X-App-Headers": json.dumps([["Access-Control-Allow-Origin", "*"]]),
    }
    answer = browser.request("OPTIONS", "/profile", headers=preflight)
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-headers"] == "anonymous", "no identity"
    cookie = "; ".join(f"{k}={v}" for k, v in browser.session_cookies().items())
    for method in ("options", "oPtIoNs"):  # as a server passes it on (httpx would upper-case)
        status, headers, body = direct(app.middleware, method, "/profile", cookie, preflight)
        assert status == 200
        assert body == b""
        assert headers["access-control-allow-headers"] == "anonymous", method


def direct(
    middleware: OIDCMiddleware | OIDCWSGIMiddleware,
    method: str,
    path: str,
    cookie: str,
    extra: dict[str, str],
) -> tuple[int, dict[str, str], bytes]:
    """One request handed to the shell as a server would, the method exactly as given."""
    headers = {
        "host": "127.0.0.1:8765",
        "cookie": cookie,
        **{k.lower(): v for k, v in extra.items()},
    }
    if isinstance(middleware, OIDCWSGIMiddleware):
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8765", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(),
            **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
        }  # fmt: skip
        started: list[Any] = []
        body = b"".join(middleware(environ, lambda status, h, *exc: started.append((status, h))))
        status_line, header_list = started[0]
        return int(status_line.split()[0]), {k.lower(): v for k, v in header_list}, body
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http", "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "server": ("127.0.0.1", 8765), "headers": raw,
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    decoded = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], decoded, body


# --- 11: answers for a signed-in user are not kept by shared caches -----------------------------


def test_answers_for_an_identity_are_private(app: App, world: World) -> None:
    browser = app.browser
    anonymous = browser.get("/public/page", headers=JSON)
    assert "cache-control" not in anonymous.headers
    browser.log_in("/profile", login="alice")
    for _ in range(2):  # the full path, then the remembered decision
        page = browser.get("/profile", headers=JSON)
        assert page.headers["cache-control"] == "private"
        assert page.headers["vary"] == "Cookie"
    own = {"X-App-Headers": json.dumps([["Cache-Control", "public, max-age=60"]])}
    assert browser.get("/profile", headers=own).headers["cache-control"] == "public, max-age=60"
    varied = {"X-App-Headers": json.dumps([["Vary", "Accept"]])}
    assert browser.get("/profile", headers=varied).headers["vary"] in (
        "Accept, Cookie",
        "Accept,Cookie",
    )
    token = forged_access_token(world, ["user"], "web")
    for _ in range(2):
        bearer = browser.get("/api", cookies={}, headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 200
        assert bearer.headers["cache-control"] == "private"
        assert "vary" not in bearer.headers


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_the_private_header_can_be_turned_off(world: World, shell: str) -> None:
    for made in make_app(world, shell, "private-responses = false"):
        made.browser.log_in("/profile", login="alice")
        page = made.browser.get("/profile", headers=JSON)
        assert page.json() == {"user": "alice"}
        assert "cache-control" not in page.headers
