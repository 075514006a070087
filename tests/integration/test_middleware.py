"""The middleware in both shells (ASGI: the Starlette example, WSGI: the Flask example) against
the real identity server: login, sessions, logout, bearer mode, /k_jwks and every bad input.

The apps run in-process (Starlette's TestClient / httpx's WSGITransport) behind one httpx
client that also talks to the identity server for real; the browser tests (tests/e2e) repeat
the main journey with Chromium and real servers.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote_to_bytes, urljoin, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from adapter import load_config, load_key_ring
from adapter.web.session import SessionCodec, split_value
from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, web_client

SECRET = "web-client-secret-" + "m" * 40
SESSION_SECRET = "session-secret-for-tests-" + "k" * 24
API = "urn:oidc-adapter:test-api"
APP_CONTEXT = [""]  # client id and issuer, as the app seals them into its cookies


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("middleware")
    web = web_client(SECRET)
    with IdentityServer([web], tmp_dir=directory) as idp:
        APP_CONTEXT[0] = f"web\0{idp.issuer}"
        config = directory / "adapter.toml"
        config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
            f'token-audiences = ["web", "{API}", "urn:oidc-adapter:opaque-api"]\n'
            'scope = "openid profile email roles"\n'
            f'session-secret = "{SESSION_SECRET}"\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
        )
        starlette_app = create_starlette_app(config)
        flask_app = create_flask_app(config)
        with TestClient(starlette_app, base_url=APP) as asgi:
            yield Stack(
                idp,
                config,
                {
                    "asgi": asgi._transport,
                    "wsgi": httpx.WSGITransport(app=flask_app),
                },
            )


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def browser(stack: Stack, shell: str) -> Iterator[Browser]:
    b = Browser(stack, shell)
    yield b
    b.http.close()


# --- the journey ---------------------------------------------------------------------------------


def test_login_lands_on_the_original_url(browser: Browser) -> None:
    first = browser.get("/profile?tab=roles")
    assert first.status_code == 302
    assert first.headers["location"] == "/oidc/login?next=%2Fprofile%3Ftab%3Droles"
    page = browser.walk(first)
    assert page.status_code == 200
    assert str(page.url) == f"{APP}/profile?tab=roles"
    assert "<p id='name'>alice</p>" in page.text
    assert "admin" in page.text or "user" in page.text  # Keycloak-style realm roles shown
    assert browser.get("/").text.count("Signed in as alice") == 1


def test_cookie_flags_and_no_fixation(browser: Browser) -> None:
    start = browser.get("/oidc/login?next=/profile")
    login_cookie = start.headers["set-cookie"]
    assert "HttpOnly" in login_cookie
    assert "SameSite=Lax" in login_cookie
    assert "Secure" not in login_cookie, "plain http on 127.0.0.1 (a secure cookie would be lost)"
    callback = browser.walk(start, stop_at_callback=True)
    landing = browser.http.get(urljoin(str(callback.url), callback.headers["location"]))
    session_headers = [
        h for h in landing.headers.get_list("set-cookie") if h.startswith("oidc_session")
    ]
    assert session_headers
    assert all("HttpOnly" in h and "SameSite=Lax" in h and "Path=/" in h for h in session_headers)
    first = browser.session_cookies()
    first_csrf = browser.csrf()
    browser.walk(browser.get("/oidc/login?next=/profile"))  # log in again, already signed in
    assert browser.session_cookies() != first, "a new login gets a new session cookie"
    assert browser.csrf() != first_csrf, "and a new session (id and CSRF token)"


def test_logout_needs_the_csrf_token(browser: Browser, stack: Stack) -> None:
    browser.log_in()
    refused = browser.post("/oidc/logout", data={})
    assert refused.status_code == 400
    assert browser.get("/profile").status_code == 200, "still signed in"
    out = browser.post("/oidc/logout", data={"csrf": browser.csrf()})
    assert out.status_code == 302
    location = out.headers["location"]
    assert location.startswith(stack.idp.metadata["end_session_endpoint"])
    query = parse_qs(urlsplit(location).query)
    assert query["post_logout_redirect_uri"] == [f"{APP}/oidc/logout"]
    assert query["state"], "a state, checked when the server sends the browser back"
    assert "id_token_hint" in query
    assert any("Max-Age=0" in h for h in out.headers.get_list("set-cookie"))
    assert browser.get("/profile").status_code == 302, "signed out"
    assert browser.get("/oidc/logout").status_code == 405


# --- state and code ------------------------------------------------------------------------------


def callback_of(browser: Browser, path: str = "/profile") -> str:
    response = browser.walk(browser.get(path), stop_at_callback=True)
    return urljoin(str(response.url), response.headers["location"])


def test_missing_tampered_and_reused_state(browser: Browser) -> None:
    url = callback_of(browser)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    code, state = query["code"][0], query["state"][0]
    assert browser.get(f"/oidc/callback?code={code}").status_code == 400
    assert browser.get(f"/oidc/callback?code={code}&state={state[:-2]}xx").status_code == 400
    assert browser.get(f"/oidc/callback?{parts.query}").status_code == 302, "the real one works"
    assert browser.get(f"/oidc/callback?{parts.query}").status_code == 400, "the state was used"


def test_callback_from_another_issuer(browser: Browser) -> None:
    """RFC 9207: an ``iss`` in the callback must be ours (mix-up attacks)."""
    url = callback_of(browser)
    query = parse_qs(urlsplit(url).query)
    code, state = query["code"][0], query["state"][0]
    forged = f"/oidc/callback?code={code}&state={state}&iss=https%3A%2F%2Fevil.example"
    assert browser.get(forged).status_code == 400


def test_reused_callback_after_success(browser: Browser) -> None:
    url = callback_of(browser)
    assert browser.get(url).status_code == 302
    assert browser.get(url).status_code == 400


def test_a_code_from_another_session(stack: Stack, shell: str) -> None:
    victim, attacker = Browser(stack, shell), Browser(stack, shell)
    victim.get("/oidc/login?next=/profile")  # the victim has a login in progress
    stolen = callback_of(attacker)  # a code and state issued to the attacker's login
    assert victim.get(stolen).status_code == 400
    assert victim.get("/profile").status_code == 302, "no session came of it"


def test_server_reported_error_on_callback(browser: Browser) -> None:
    start = browser.get("/oidc/login?next=/")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    refused = browser.get(f"/oidc/callback?error=access_denied&state={state}")
    assert refused.status_code == 401
    assert "access_denied" in refused.text


@pytest.mark.parametrize(
    "target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "http:/x"]
)
def test_no_open_redirect(browser: Browser, target: str) -> None:
    start = browser.get("/oidc/login", params={"next": target})
    callback = browser.walk(start, stop_at_callback=True)
    landing = browser.http.get(urljoin(str(callback.url), callback.headers["location"]))
    assert landing.status_code == 302
    assert landing.headers["location"] == "/"


# --- bad session cookies --------------------------------------------------------------------------


def app_codec(*secrets: str) -> SessionCodec:
    """The codec of the app under test: its client id and issuer are sealed in."""
    return SessionCodec([s.encode() for s in secrets], context=APP_CONTEXT[0])


def forged_session(secret: str, **document: Any) -> str:
    return app_codec(secret).seal(document, "session")


@pytest.mark.parametrize(
    "kind", ["tampered", "truncated", "expired", "foreign", "garbage", "wrong-purpose"]
)
def test_bad_session_cookies_are_no_session(browser: Browser, kind: str) -> None:
    browser.log_in()
    good = browser.session_cookies()["oidc_session"]
    session = {"sid": "s", "csrf": "c", "claims": {"sub": "mallory"}, "iat": time.time()}
    cookie = {
        "tampered": good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:],
        "truncated": good[: len(good) // 2],
        "expired": forged_session(SESSION_SECRET, d=session, t=int(time.time()) - 10 * 86400),
        "foreign": forged_session(
            "another-secret-of-enough-length-123", d=session, t=int(time.time())
        ),
        "garbage": "v1.%%%.@@@",
        "wrong-purpose": app_codec(SESSION_SECRET).seal(
            {"d": session, "t": int(time.time())}, "login"
        ),
    }[kind]
    browser.http.cookies.clear()
    html = browser.get(
        "/profile", cookies={"oidc_session": cookie}, headers={"Accept": "text/html"}
    )
    assert html.status_code == 302
    assert html.headers["location"].startswith("/oidc/login")
    api = browser.get(
        "/profile", cookies={"oidc_session": cookie}, headers={"Accept": "application/json"}
    )
    assert api.status_code == 401
    assert api.headers["www-authenticate"].startswith("Bearer")


def test_a_large_session_is_split_and_rejoined(browser: Browser) -> None:
    claims = {"sub": "big", "preferred_username": "big", "blob": secrets.token_urlsafe(6000)}
    session = {"sid": "s", "csrf": "c", "claims": claims, "iat": time.time()}
    sealed = forged_session(SESSION_SECRET, d=session, t=int(time.time()))
    parts = dict(split_value("oidc_session", sealed))
    assert len(parts) >= 2
    page = browser.get("/profile", cookies=parts)
    assert page.status_code == 200
    assert "<p id='name'>big</p>" in page.text
    missing = {k: v for k, v in parts.items() if k != "oidc_session.1"}
    browser.http.cookies.clear()
    assert browser.get("/profile", cookies=missing).status_code == 302


def test_refused_refresh_ends_the_session_cleanly(browser: Browser) -> None:
    session = {
        "sid": "s",
        "csrf": "c",
        "claims": {"sub": "x"},
        "iat": time.time(),
        "at": "expired-access-token",
        "rt": "not-a-refresh-token",
        "exp": time.time() - 60,
    }
    sealed = forged_session(SESSION_SECRET, d=session, t=int(time.time()))
    response = browser.get("/profile", cookies={"oidc_session": sealed})
    assert response.status_code == 302
    assert response.headers["location"].startswith("/oidc/login")
    assert any(h.startswith("oidc_session=;") for h in response.headers.get_list("set-cookie"))


def test_tokens_are_refreshed_before_they_expire(browser: Browser) -> None:
    browser.log_in()
    cookies = browser.session_cookies()
    # Age the session's access token in place: same session, expiry in the past.
    codec = app_codec(SESSION_SECRET)
    document = codec.open(cookies["oidc_session"], "session")
    assert document is not None
    document["d"]["exp"] = time.time() - 1
    old_access = document["d"]["at"]
    browser.http.cookies.clear()
    page = browser.get("/profile", cookies={"oidc_session": codec.seal(document, "session")})
    assert page.status_code == 200
    renewed = [h for h in page.headers.get_list("set-cookie") if h.startswith("oidc_session=")]
    assert renewed, "the refreshed tokens went back into the cookie"
    value = renewed[0].split(";", 1)[0].split("=", 1)[1]
    fresh = codec.open(value, "session")
    assert fresh is not None
    assert fresh["d"]["at"] != old_access
    assert fresh["d"]["sid"] == document["d"]["sid"], "the same session continues"


# --- bearer mode, /k_jwks ---------------------------------------------------------------


def test_bearer_tokens(browser: Browser, stack: Stack) -> None:
    token = httpx.post(
        stack.idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": API},
        auth=("web", SECRET),
    ).json()["access_token"]
    ok = browser.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert ok.json()["client_id"] == "web"
    for bad in (token[:-4] + "AAAA", "not-a-token", token.split(".")[0]):
        refused = browser.get("/api/whoami", headers={"Authorization": f"Bearer {bad}"})
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert browser.get("/api/whoami", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_k_jwks(browser: Browser, stack: Stack) -> None:
    ring = load_key_ring(load_config(stack.config))
    response = browser.get("/k_jwks")
    assert response.status_code == 200
    assert response.content == ring.jwks_bytes
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"] == ring.etag
    assert "max-age" in response.headers["cache-control"]
    again = browser.get("/k_jwks", headers={"If-None-Match": ring.etag})
    assert again.status_code == 304
    assert again.content == b""
    head = browser.http.head("/k_jwks")
    assert head.status_code == 200
    assert head.content == b""
    assert browser.post("/k_jwks").status_code == 405


# --- anything at all ---------------------------------------------------------------------

TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)  # any Unicode
LATIN1 = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
OVERSIZED = st.sampled_from(["x" * 20_000, "é" * 9_000, "%FF" * 3_000, "a=b&" * 2_000])


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]),
    path=st.sampled_from(
        [
            "/",
            "/profile",
            "/oidc/login",
            "/oidc/callback",
            "/oidc/logout",
            "/k_jwks",
            "/api/whoami",
            "/nowhere",
            "/profil%C3%A9/%E2%82%AC",
            "/%FF%FE%00",
        ]
    ),
    query=st.one_of(TEXT, ANY_TEXT, OVERSIZED, ANY_TEXT.map(lambda t: f"state={t}&code={t}")),
    cookie=st.one_of(
        st.none(),
        TEXT,
        LATIN1,
        OVERSIZED,
        st.just("oidc_session=2~abc; oidc_session.1=x"),
        LATIN1.map(lambda t: f"oidc_session={t}; oidc_login={t}"),
    ),
    authorization=st.one_of(
        st.none(), TEXT, LATIN1.map(lambda t: f"Bearer {t}"), OVERSIZED.map(lambda t: f"Bearer {t}")
    ),
    accept=st.sampled_from(["text/html", "application/json", "*/*", ""]),
    body=st.one_of(st.just(b""), st.binary(max_size=200), OVERSIZED.map(str.encode)),
)
def test_random_requests_never_fail(
    stack: Stack, caplog: pytest.LogCaptureFixture, method: str, path: str, query: str,
    cookie: str | None, authorization: str | None, accept: str, body: bytes,
) -> None:  # fmt: skip
    """Random, non-ASCII and oversized input: 4xx at worst, and never an error in the log
    (those are for the adapter's own failures)."""
    caplog.clear()
    headers: dict[str, bytes] = {"Accept": accept.encode()}
    if cookie is not None:
        headers["Cookie"] = cookie.encode("utf-8")
    if authorization is not None:
        headers["Authorization"] = authorization.encode("utf-8")
    if body:
        headers["Content-Type"] = b"application/x-www-form-urlencoded"
    url = f"{path}?{quote(query, safe='=&%')}" if query else path  # as it comes over the wire
    browser = Browser(stack, "asgi")
    response = browser.http.request(method, url, headers=headers, content=body or None)
    assert response.status_code < 500, (method, url[:200], response.text[:200])
    browser.http.close()
    status = call_wsgi(stack.transports["wsgi"], method, httpx.URL(APP + url), headers, body)
    assert status < 500, ("wsgi", method, url[:200])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors


def call_wsgi(
    transport: httpx.BaseTransport, method: str, url: httpx.URL, headers: dict[str, bytes],
    body: bytes,
) -> int:  # fmt: skip
    """Call the WSGI app as a server does (PEP 3333: bytes as Latin-1 text); httpx's own
    WSGITransport refuses non-ASCII header bytes before the app sees them."""
    assert isinstance(transport, httpx.WSGITransport)
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(url.raw_path.split(b"?")[0]).decode("latin-1"),
        "QUERY_STRING": url.query.decode("latin-1"),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8765",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "HTTP_HOST": "127.0.0.1:8765",
    }
    for name, value in headers.items():
        key = "CONTENT_TYPE" if name == "Content-Type" else "HTTP_" + name.upper()
        environ[key.replace("-", "_")] = value.decode("latin-1")
    statuses: list[str] = []
    chunks = transport.app(environ, lambda status, headers, *exc: statuses.append(status))
    b"".join(chunks)
    return int(statuses[0].split()[0])


# --- other configurations -----------------------------------------------------------------------


def variant(stack: Stack, tmp_path: Path, extra: str) -> Path:
    config = tmp_path / "variant.toml"
    text = stack.config.read_text()
    config.write_text(text.replace('client-id = "web"\n', f'client-id = "web"\n{extra}\n'))
    return config


def test_bearer_only_with_introspection(stack: Stack, tmp_path: Path) -> None:
    from examples.flask_app.app import create_app

    config = variant(stack, tmp_path, "bearer-only = true\nbearer-introspection = true")
    app = create_app(config)
    token = httpx.post(
        stack.idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": "urn:oidc-adapter:opaque-api"},
        auth=("web", SECRET),
    ).json()["access_token"]
    assert token.count(".") != 2, "an opaque token: only introspection can check it"
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=APP) as client:
        ok = client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.json()["client_id"] == "web"
        anonymous = client.get("/profile", headers={"Accept": "text/html"})
        assert anonymous.status_code == 401, "bearer-only never redirects to a login"
        assert client.get("/oidc/login").status_code == 404, "and has no login routes"
        revoked = httpx.post(
            stack.idp.metadata["revocation_endpoint"], data={"token": token}, auth=("web", SECRET)
        )
        assert revoked.status_code == 200
        other = client.get("/api/whoami", headers={"Authorization": "Bearer opaque-unknown"})
        assert other.status_code == 401


def test_memory_store_and_session_key_rotation(stack: Stack, tmp_path: Path) -> None:
    from examples.starlette_app.app import create_app

    old = SESSION_SECRET
    new = "a-brand-new-session-secret-" + "n" * 20
    memory = variant(stack, tmp_path, 'session-store = "memory"').read_text()
    rotated = tmp_path / "rotated.toml"
    both = f'session-secret = "{new}"\nprevious-session-secret = "{old}"'
    rotated.write_text(memory.replace(f'session-secret = "{old}"', both))
    for config in (tmp_path / "variant.toml", rotated):
        with TestClient(create_app(config), base_url=APP) as asgi:
            browser = Browser(Stack(stack.idp, config, {"asgi": asgi._transport}), "asgi")
            page = browser.log_in()
            assert page.status_code == 200
            cookie = browser.session_cookies()["oidc_session"]
            opened = app_codec(new if config == rotated else old).open(cookie, "session")
            assert opened is not None
            assert "d" not in opened, "the memory store keeps only the session id in the cookie"
    # A cookie sealed with the old secret still opens after the rotation.
    codec = app_codec(new, old)
    assert codec.open(app_codec(old).seal({"x": 1}, "session"), "session") == {"x": 1}


# --- after the review --------------------------------------------------------------------------


def test_non_ascii_paths_come_back_percent_encoded(browser: Browser) -> None:
    first = browser.get("/profile/%E2%82%AC?x=%C3%A9")
    assert first.status_code == 302
    assert (
        first.headers["location"]
        == "/oidc/login?next=%2Fprofile%2F%25E2%2582%25AC%3Fx%3D%25C3%25A9"
    )
    callback = browser.walk(first, stop_at_callback=True)
    landing = browser.http.get(urljoin(str(callback.url), callback.headers["location"]))
    assert landing.status_code == 302
    assert landing.headers["location"] == "/profile/%E2%82%AC?x=%C3%A9"


def test_logout_is_refused_cross_site_and_changes_nothing_without_a_session(
    browser: Browser,
) -> None:
    anonymous = browser.post("/oidc/logout", data={})
    assert anonymous.status_code == 302
    assert "set-cookie" not in anonymous.headers, "nothing to clear, nothing cleared"
    browser.log_in()
    csrf = browser.csrf()
    cross = browser.post(
        "/oidc/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    assert browser.get("/profile").status_code == 200
    by_header = browser.post("/oidc/logout", headers={"X-CSRF-Token": csrf})
    assert by_header.status_code == 302
    assert browser.get("/profile").status_code == 302


def test_websockets_need_a_session(stack: Stack) -> None:
    from starlette.testclient import WebSocketDisconnect

    with (
        TestClient(create_starlette_app(stack.config), base_url=APP) as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws"),
    ):
        pass
    assert closed.value.code == 1008


def test_cookies_are_secure_behind_an_https_origin(stack: Stack, tmp_path: Path) -> None:
    config = variant(stack, tmp_path, 'redirect-uri = "https://app.example.com/oidc/callback"')
    with httpx.Client(
        transport=httpx.WSGITransport(app=create_flask_app(config)), base_url=APP
    ) as c:
        start = c.get("/oidc/login?next=/")
    assert "Secure" in start.headers["set-cookie"]
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["redirect_uri"] == ["https://app.example.com/oidc/callback"]


def test_preflight_requests_reach_the_app(browser: Browser) -> None:
    preflight = {"Origin": "http://x.example", "Access-Control-Request-Method": "PUT"}
    response = browser.http.options("/profile", headers=preflight)
    assert response.status_code not in (302, 401)
    assert response.status_code < 500


def test_k_jwks_headers_are_a_fresh_list_each_time(stack: Stack) -> None:
    """Outer middleware often appends to the header list: that must not pile up."""
    middleware = create_flask_app(stack.config).wsgi_app
    counts = []
    for _ in range(3):

        def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> None:
            headers.append(("X-Added-By-Outer-Middleware", "1"))
            counts.append(len(headers))

        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/k_jwks",
            "SERVER_NAME": "app",
            "SERVER_PORT": "80",
            "wsgi.url_scheme": "http",
        }
        b"".join(middleware(environ, start_response))
    assert counts[0] == counts[1] == counts[2]
