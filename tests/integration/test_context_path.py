"""The adapter under a context path: ASGI ``root_path`` (both shapes), Starlette ``Mount``,
WSGI ``SCRIPT_NAME`` (werkzeug's dispatcher) and ``ProxyFix`` with ``X-Forwarded-Prefix``,
against the real identity server. The browser test behind nginx repeats it end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack

SECRET = "context-path-secret-" + "c" * 40
SESSION_SECRET = "context-path-session-secret-" + "p" * 20
PREFIXES = ("/myapp", "/a", "/b")


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    web = {
        "client_id": "web",
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [f"{APP}{p}/oidc/callback" for p in PREFIXES],
        "post_logout_redirect_uris": [f"{APP}{p}/oidc/logout" for p in PREFIXES],
    }
    with IdentityServer([web], tmp_dir=tmp_path_factory.mktemp("context-path")) as server:
        yield server


@pytest.fixture(scope="module")
def config(idp: IdentityServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "adapter.toml"
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


def mounted(kind: str, config: Path, stack: ExitStack) -> httpx.BaseTransport:
    """The example app at /myapp, mounted the way ``kind`` says."""
    if kind == "starlette-mount":
        app = Starlette(routes=[Mount("/myapp", app=create_starlette_app(config))])
        client = stack.enter_context(TestClient(app, base_url=APP))  # one event loop for all
        return client._transport
    if kind == "werkzeug-dispatcher":
        flask = create_flask_app(config)
        return httpx.WSGITransport(app=DispatcherMiddleware(_not_found, {"/myapp": flask}))
    # ProxyFix: the proxy strips /myapp and says so in X-Forwarded-Prefix.
    flask = create_flask_app(config)
    flask.wsgi_app = ProxyFix(flask.wsgi_app, x_prefix=1)  # type: ignore[method-assign]
    return _Prefixed(httpx.WSGITransport(app=flask), "/myapp")


def _not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"outside the app\n"]


class _Prefixed(httpx.BaseTransport):
    """A reverse proxy in miniature: /myapp/x reaches the app as /x with X-Forwarded-Prefix."""

    def __init__(self, inner: httpx.BaseTransport, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        if not path.startswith(self.prefix + "/"):
            return httpx.Response(404, request=request)
        url = request.url.copy_with(raw_path=path[len(self.prefix) :].encode())
        headers = {**request.headers, "X-Forwarded-Prefix": self.prefix}
        return self.inner.handle_request(
            httpx.Request(request.method, url, headers=headers, content=request.content)
        )


KINDS = ["starlette-mount", "werkzeug-dispatcher", "werkzeug-proxyfix"]


@pytest.fixture(params=KINDS)
def browser(request: pytest.FixtureRequest, idp: IdentityServer, config: Path) -> Iterator[Browser]:
    with ExitStack() as stack:
        transport = mounted(str(request.param), config, stack)
        b = Browser(Stack(idp, config, {"app": transport}), "app")
        yield b
        b.http.close()


def test_the_adapter_routes_live_under_the_prefix(browser: Browser) -> None:
    assert browser.get("/myapp/k_jwks").status_code == 200
    assert browser.get("/k_jwks").status_code == 404, "nothing of the app outside its prefix"
    start = browser.get("/myapp/profile?tab=1", headers={"Accept": "text/html"})
    assert start.status_code == 302
    assert start.headers["location"] == "/myapp/oidc/login?next=%2Fprofile%3Ftab%3D1"
    login = browser.get(start.headers["location"])
    query = parse_qs(urlsplit(login.headers["location"]).query)
    assert query["redirect_uri"] == [f"{APP}/myapp/oidc/callback"]
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("oidc_login_myapp=")
    assert "Path=/myapp;" in cookie


def test_a_login_under_the_prefix_comes_back_to_its_page(browser: Browser) -> None:
    page = browser.walk(browser.get("/myapp/profile?tab=1", headers={"Accept": "text/html"}))
    assert page.status_code == 200
    assert str(page.url) == f"{APP}/myapp/profile?tab=1"
    assert "<p id='name'>alice</p>" in page.text
    assert "action='/myapp/oidc/logout'" in page.text, "the example's links keep the prefix"
    names = {c.name: c for c in browser.http.cookies.jar}
    assert "oidc_session_myapp" in names
    assert names["oidc_session_myapp"].path == "/myapp"
    assert browser.get("/myapp/").text.count("Signed in as alice") == 1, "public path, relative"
    out = browser.post("/myapp/oidc/logout", data={"csrf": browser.csrf("/myapp/profile")})
    assert out.status_code == 302
    query = parse_qs(urlsplit(out.headers["location"]).query)
    assert query["post_logout_redirect_uri"] == [f"{APP}/myapp/oidc/logout"]
    assert browser.get("/myapp/profile", headers={"Accept": "text/html"}).status_code == 302


def test_return_urls_stay_inside_the_prefix(browser: Browser) -> None:
    start = browser.get("/myapp/oidc/login?next=/other")
    callback = browser.walk(start, stop_at_callback=True)
    landing = browser.http.get(urljoin(str(callback.url), callback.headers["location"]))
    assert landing.status_code == 302
    assert landing.headers["location"] == "/myapp/other"


def asgi_call(app: Any, scope_path: str, root_path: str) -> int:
    """One GET through an ASGI app with a hand-made scope (the shapes servers send)."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": scope_path,
        "raw_path": scope_path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8765")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8765),
    }
    asyncio.run(app(scope, receive, send))
    return statuses[0]


@pytest.mark.parametrize("scope_path", ["/myapp/k_jwks", "/k_jwks"])
def test_both_asgi_root_path_shapes(config: Path, scope_path: str) -> None:
    """uvicorn --root-path (recent: the prefix in front of ``path``; older: not)."""
    assert asgi_call(create_starlette_app(config), scope_path, "/myapp") == 200


def test_two_apps_on_one_host_keep_separate_sessions(idp: IdentityServer, config: Path) -> None:
    router = Starlette(
        routes=[
            Mount("/a", app=create_starlette_app(config)),
            Mount("/b", app=create_starlette_app(config)),
        ]
    )
    with TestClient(router, base_url=APP) as client:
        browser = Browser(Stack(idp, config, {"app": client._transport}), "app")
        page = browser.walk(browser.get("/a/profile", headers={"Accept": "text/html"}))
        assert page.status_code == 200
        other = browser.get("/b/profile", headers={"Accept": "text/html"})
        assert other.status_code == 302, "signed in at /a, not at /b"
        assert other.headers["location"].startswith("/b/oidc/login")
        ours = {c.name for c in browser.http.cookies.jar if c.name.startswith("oidc")}
        assert ours == {"oidc_session_a"}
        page = browser.walk(browser.get("/b/profile", headers={"Accept": "text/html"}))
        assert page.status_code == 200, "the server's single sign-on: a session of its own"
        ours = {c.name for c in browser.http.cookies.jar if c.name.startswith("oidc")}
        assert ours == {"oidc_session_a", "oidc_session_b"}
        out = browser.post("/a/oidc/logout", data={"csrf": browser.csrf("/a/profile")})
        assert out.status_code == 302
        assert browser.get("/a/profile", headers={"Accept": "text/html"}).status_code == 302
        assert browser.get("/b/profile").status_code == 200, "logging out of /a leaves /b"
        browser.http.close()
