"""The findings of the adversarial review, each as an attack through the real shells.

Apps are plain ASGI/WSGI callables that answer anything with what they know of the user (a
catch-all proxy or a Django function view behaves like this), behind the middleware, against
the real identity server. Each test names the review item it proves.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient, WebSocketDisconnect

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, current_identity
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.web._steps import Identity, Proceed, WebRequest, drive
from adapter.web.session import SessionCodec
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, signing_key

SECRET = "security-client-secret-" + "s" * 40
SESSION_SECRET = "security-session-secret-" + "q" * 24
API = "urn:oidc-adapter:test-api"
OPAQUE = "urn:oidc-adapter:opaque-api"
HTTPS_APP = "https://127.0.0.1:8765"


def many_roles(count: int) -> list[str]:
    return [f"role-{secrets.token_hex(8)}" for _ in range(count)]


ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"realm_access": {"roles": ["user", "admin"]}},
    "eve": {"email": "boss@example.test", "email_verified": False},
    "medium": {"realm_access": {"roles": many_roles(300)}},  # a session of 4+ cookies
    "big": {"realm_access": {"roles": many_roles(1800)}},  # tokens of about 40 KB
}


@dataclass
class Setup:
    idp: IdentityServer
    directory: Path
    server_key: rsa.RSAPrivateKey


def client(client_id: str, base: str = APP) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [f"{APP}/oidc/callback", f"{HTTPS_APP}/oidc/callback"],
        "post_logout_redirect_uris": [f"{base}/oidc/logout"],
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("security")
    server_key, jwk = signing_key()
    with IdentityServer(
        [client("web"), client("web2")],
        tmp_dir=directory,
        accounts=ACCOUNTS,
        jwks={"keys": [jwk]},
    ) as idp:
        yield Setup(idp, directory, server_key)


def write_config(
    setup: Setup, *extra: str, client_id: str = "web", scope: str = "openid profile email roles"
) -> Path:
    path = setup.directory / f"adapter-{secrets.token_hex(4)}.toml"
    path.write_text(
        f'issuer = "{setup.idp.issuer}"\nclient-id = "{client_id}"\n'
        f'scope = "{scope}"\n'
        f'session-secret = "{SESSION_SECRET}"\n' + "".join(f"{line}\n" for line in extra) + "\n"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


# --- the apps: anything, to anyone the middleware lets through --------------------------------


def describe(identity: Identity | None) -> bytes:
    if identity is None:
        return json.dumps({"user": None, "secret": "protected content"}).encode()
    return json.dumps(
        {
            "user": identity.display_name,
            "roles": sorted(identity.roles),
            "scopes": sorted(identity.scopes),
            "csrf": identity.csrf_token,
            "secret": "protected content",
        }
    ).encode()


async def catch_all_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": describe(current_identity(scope)).decode()})
        await send({"type": "websocket.close", "code": 1000})
        return
    body = describe(current_identity(scope))
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def catch_all_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [describe(current_identity(environ))]


Middleware = OIDCMiddleware | OIDCWSGIMiddleware


@dataclass
class Web:
    """An app behind the middleware, and a browser for it."""

    middleware: Middleware
    browser: Browser
    closers: list[Callable[[], None]]

    @property
    def core(self) -> Any:
        return self.middleware.shell.core()[1]


@pytest.fixture
def make_web(setup: Setup) -> Iterator[Callable[..., Web]]:
    opened: list[Web] = []

    def make(
        shell: str,
        config: Path,
        base: str = APP,
        http: httpx.Client | httpx.AsyncClient | None = None,
        idp: IdentityServer | None = None,
    ) -> Web:
        closers: list[Callable[[], None]] = []
        if shell == "asgi":
            middleware: Middleware = OIDCMiddleware(catch_all_asgi, config, http=http)  # type: ignore[arg-type]
            test_client = TestClient(middleware, base_url=base)
            test_client.__enter__()
            closers.append(lambda: test_client.__exit__(None, None, None))
            transport: httpx.BaseTransport = test_client._transport
        else:
            middleware = OIDCWSGIMiddleware(catch_all_wsgi, config, http=http)  # type: ignore[arg-type]
            transport = httpx.WSGITransport(app=middleware)
        browser = Browser(Stack(idp or setup.idp, config, {shell: transport}), shell, base)
        closers.append(browser.http.close)
        web = Web(middleware, browser, closers)
        opened.append(web)
        return web

    yield make
    for web in opened:
        for close in web.closers:
            close()


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def signed_in(web: Web, login: str = "alice", path: str = "/private") -> dict[str, Any]:
    page = web.browser.walk(web.browser.get(path, headers={"Accept": "text/html"}), login)
    assert page.status_code == 200, page.text[:300]
    document: dict[str, Any] = page.json()
    return document


def codec(setup: Setup, client_id: str = "web") -> SessionCodec:
    return SessionCodec([SESSION_SECRET.encode()], context=f"{client_id}\0{setup.idp.issuer}")


def session_document(web: Web, setup: Setup, name: str = "oidc_session") -> dict[str, Any]:
    value = web.browser.session_cookies().get(name) or next(
        c.value for c in web.browser.http.cookies.jar if c.name.endswith(name)
    )
    document = codec(setup).open(value, "session")
    assert document is not None
    return document


def client_token(setup: Setup, resource: str = API, client_id: str = "web") -> str:
    answer = httpx.post(
        setup.idp.metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": resource},
        auth=(client_id, SECRET),
    )
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


# --- 1. OPTIONS is not a way in ------------------------------------------------------------------


def test_options_is_not_a_way_in(setup: Setup, make_web: Callable[..., Web], shell: str) -> None:
    web = make_web(shell, write_config(setup))
    for headers in ({}, {"Origin": "http://x.example"}, {"Access-Control-Request-Method": "GET"}):
        answer = web.browser.http.options("/private", headers=headers)
        assert answer.status_code == 401, headers
        assert b"protected content" not in answer.content
    preflight = {"Origin": "http://x.example", "Access-Control-Request-Method": "PUT"}
    passed = web.browser.http.options("/private", headers=preflight)
    assert passed.status_code == 200, "a preflight reaches the app (its CORS answers)"
    assert passed.content == b"", "but nothing the app says beyond its CORS headers"
    assert "content-type" not in passed.headers


def test_bearer_only_lets_real_preflights_through(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    web = make_web(shell, write_config(setup, "bearer-only = true"))
    preflight = {"Origin": "http://x.example", "Access-Control-Request-Method": "GET"}
    assert web.browser.http.options("/api", headers=preflight).status_code == 200
    assert web.browser.http.options("/api").status_code == 401


# --- 2. introspection accepts access tokens only ---------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """The real network, counting the calls to one path (sync and async)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.calls = 0
        self._sync = httpx.HTTPTransport()
        self._async = httpx.AsyncHTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += request.url.path == self.path
        return self._sync.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += request.url.path == self.path
        return await self._async.handle_async_request(request)


def test_introspection_refuses_refresh_tokens(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    login = make_web(shell, write_config(setup))
    signed_in(login)
    refresh_token = session_document(login, setup)["d"]["rt"]
    assert refresh_token.count(".") != 2, "oidc-provider's refresh tokens are opaque"
    for audience_check in ("true", "false"):
        config = write_config(
            setup,
            "bearer-only = true",
            "bearer-introspection = true",
            f"verify-token-audience = {audience_check}",
            f'token-audiences = ["{OPAQUE}"]',
        )
        api = make_web(shell, config)
        refused = api.browser.get("/api", headers=bearer(refresh_token))
        assert refused.status_code == 401, audience_check
        access = client_token(setup, OPAQUE)
        assert api.browser.get("/api", headers=bearer(access)).status_code == 200


def test_junk_tokens_cost_one_introspection(setup: Setup, make_web: Callable[..., Web]) -> None:
    config = write_config(setup, "bearer-only = true", "bearer-introspection = true")
    counter = CountingTransport("/token/introspection")
    web = make_web("asgi", config, http=httpx.AsyncClient(transport=counter))

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=web.middleware)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=APP) as http:
            answers = await asyncio.gather(
                *(http.get("/api", headers=bearer("junk-token-1")) for _ in range(20))
            )
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [401] * 20
    assert counter.calls == 1, "identical tokens in flight share one call"
    for _ in range(20):
        assert web.browser.get("/api", headers=bearer("junk-token-1")).status_code == 401
    assert counter.calls == 1, "a refused token is remembered for a few seconds"


# --- 3. bearer tokens are for us -------------------------------------------------------------


def forged(setup: Setup, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A token well signed by the identity server's own key (the test holds it)."""
    now = int(time.time())
    base = {"iss": setup.idp.issuer, "sub": "alice", "iat": now, "exp": now + 300}
    full_header = {"alg": "RS256", "kid": "server-1", **(header or {})}
    return sign_compact(
        encode_header(full_header), {**base, **claims}, make_signer("RS256", setup.server_key)
    )


def test_bearer_tokens_for_another_audience_are_refused(
    setup: Setup, make_web: Callable[..., Web], shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    web = make_web(shell, write_config(setup))
    token = client_token(setup, API)  # aud: the API, not this client
    with caplog.at_level(logging.INFO, logger="adapter"):
        assert web.browser.get("/api", headers=bearer(token)).status_code == 401
    line = next(r.getMessage() for r in caplog.records if "audience" in r.getMessage())
    assert API in line, "names the audience found"
    assert "'web'" in line, "and the one expected"
    assert "audience mapper" in line
    assert "verify-token-audience = false" in line
    listed = make_web(shell, write_config(setup, f'token-audiences = ["{API}"]'))
    assert listed.browser.get("/api", headers=bearer(token)).status_code == 200


def test_id_tokens_are_not_bearer_tokens(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    login = make_web(shell, write_config(setup))
    signed_in(login)
    id_token = session_document(login, setup)["d"]["id"]
    without_nonce = forged(setup, {"aud": "web", "azp": "web", "auth_time": int(time.time())})
    with_scope = forged(setup, {"aud": "web", "scope": "openid api"}, {"typ": "JWT"})
    for audience_check in ("true", "false"):
        web = make_web(shell, write_config(setup, f"verify-token-audience = {audience_check}"))
        assert web.browser.get("/api", headers=bearer(id_token)).status_code == 401
        assert web.browser.get("/api", headers=bearer(without_nonce)).status_code == 401
        assert web.browser.get("/api", headers=bearer(with_scope)).status_code == 200


def test_audience_check_off_warns_once(
    setup: Setup, make_web: Callable[..., Web], shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="adapter"):
        web = make_web(shell, write_config(setup, "verify-token-audience = false"))
        for _ in range(3):
            assert web.browser.get("/", headers={"Accept": "application/json"}).status_code == 401
        web.middleware.reload()
        web.browser.get("/", headers={"Accept": "application/json"})
    warnings = [r for r in caplog.records if "verify-token-audience = false" in r.getMessage()]
    assert len(warnings) == 1


# --- 4, 5. logout ends the session, also for a copied cookie; no resurrection ---------------


def test_logout_ends_copied_cookies_and_revokes_the_refresh_token(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    web = make_web(shell, write_config(setup))
    csrf = signed_in(web)["csrf"]
    copied = web.browser.session_cookies()
    refresh_token = session_document(web, setup)["d"]["rt"]
    assert web.browser.get("/private", cookies=copied).status_code == 200
    out = web.browser.post("/oidc/logout", data={"csrf": csrf}, cookies=copied)
    assert out.status_code == 302
    again = web.browser.get("/private", cookies=copied, headers={"Accept": "application/json"})
    assert again.status_code == 401, "the copy of the cookie ended with the session"
    introspected = httpx.post(
        setup.idp.metadata["introspection_endpoint"],
        data={"token": refresh_token},
        auth=("web", SECRET),
    ).json()
    assert introspected == {"active": False}, "the refresh token was revoked at logout"


def test_logout_works_while_the_server_is_down(
    tmp_path: Path, make_web: Callable[..., Web], shell: str
) -> None:
    with IdentityServer([client("web")], tmp_dir=tmp_path) as idp:
        own = Setup(idp, tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        config = write_config(own)
        first = make_web(shell, config, idp=idp)
        csrf = signed_in(first)["csrf"]
        cookies = first.browser.session_cookies()
    fresh = make_web(
        shell, config, idp=idp
    )  # another worker: it never fetched the server's metadata
    started = time.monotonic()
    out = fresh.browser.post("/oidc/logout", data={"csrf": csrf}, cookies=cookies)
    assert out.status_code == 302
    assert out.headers["location"] == "/", "post-logout-redirect: the server is unreachable"
    assert any("Max-Age=0" in h for h in out.headers.get_list("set-cookie"))
    assert time.monotonic() - started < 5
    fresh_again = fresh.browser.get("/private", cookies=cookies, headers={"Accept": "*/json"})
    assert fresh_again.status_code == 401


def test_a_session_ended_while_it_was_decided_is_not_remembered(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    """The race a reviewer found: a request loads a session, a logout ends it, then the first
    request remembers its decision. The remembered decision must not outlive the logout."""
    web = make_web(shell, write_config(setup))
    signed_in(web)
    core = web.core
    name = core.cookies.names(_request())[0]
    request = _request(cookies={name: web.browser.session_cookies()[name]})
    session = drive(core.cookies.load(request), _no_io)
    assert session is not None
    outcome = Proceed(core.identity_from_claims(session.claims))
    drive(core.cookies.end(session), _no_io)  # the logout lands between load and remember
    core._remember(request, session, outcome, core.decisions.generation)
    assert len(core.decisions) == 0
    header = f"{name}={request.cookies[name]}"
    assert web.middleware.shell.front()[1].cached_session(header, https=False) is None


def _no_io(step: object) -> None:
    raise AssertionError(f"a cookie session needs no I/O, got {step!r}")


def _request(cookies: dict[str, str] | None = None) -> WebRequest:
    return WebRequest("GET", "/private", "", {}, cookies or {}, host="127.0.0.1:8765")


class GatedTransport(httpx.BaseTransport):
    """The real network, except that refresh grants wait at a gate: before the server sees
    them (a hanging token endpoint), or, with ``after_answer``, once it has answered (a slow
    network back: the server has already rotated the tokens)."""

    def __init__(self, fail: bool = False, after_answer: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.refreshes = 0
        self.fail = fail
        self.after_answer = after_answer
        self.answers: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if b"grant_type=refresh_token" not in request.content:
            return self.inner.handle_request(request)
        self.refreshes += 1
        if self.after_answer:
            response = self.inner.handle_request(request)
            body = response.read()
            self.answers.append(json.loads(body))
            self.entered.set()
            assert self.gate.wait(20), "the test never opened the gate"
            return httpx.Response(response.status_code, headers=response.headers, content=body)
        self.entered.set()
        assert self.gate.wait(20), "the test never opened the gate"
        if self.fail:
            raise httpx.ReadTimeout("the token endpoint hangs", request=request)
        return self.inner.handle_request(request)


def age_session(web: Web, setup: Setup, seconds_left: float) -> dict[str, str]:
    """Cookies of the same session whose access token has ``seconds_left`` to live."""
    document = session_document(web, setup)
    document["d"]["exp"] = time.time() + seconds_left
    return {"oidc_session": codec(setup).seal(document, "session")}


def run_in_thread(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


@pytest.mark.parametrize("store", ["memory", "cookie"])
def test_a_refresh_that_lands_after_logout_does_not_resurrect(
    setup: Setup, make_web: Callable[..., Web], store: str
) -> None:
    """The server answers the refresh, then the user logs out before the answer is back: the
    session stays ended, no cookie carries it, and the new refresh token is revoked."""
    gated = GatedTransport(after_answer=True)
    config = write_config(setup, f'session-store = "{store}"')
    web = make_web("wsgi", config, http=httpx.Client(transport=gated))
    csrf = signed_in(web)["csrf"]
    memory = web.middleware.shell.memory_store
    if store == "memory":
        cookies = web.browser.session_cookies()
        (sid,) = list(memory._sessions)
        data = memory.load(sid)
        assert data is not None
        data["exp"] = time.time() - 1  # the access token expired: refresh
        web.core.decisions.clear()  # as time would have: decided only until the old expiry
    else:
        cookies = age_session(web, setup, seconds_left=-1)
    other = Browser(
        Stack(setup.idp, config, {"wsgi": httpx.WSGITransport(app=web.middleware)}), "wsgi"
    )
    thread, results = run_in_thread(
        lambda: other.get("/private", cookies=cookies, headers={"Accept": "application/json"})
    )
    assert gated.entered.wait(10)
    out = web.browser.post("/oidc/logout", data={"csrf": csrf}, cookies=cookies)
    assert out.status_code == 302
    gated.gate.set()
    thread.join(20)
    (late,) = results
    assert late.status_code == 401, "the session ended while it was being refreshed"
    assert not any("oidc_session=v1" in h for h in late.headers.get_list("set-cookie"))
    assert len(memory) == 0, "the store did not get the session back"
    (answer,) = gated.answers
    introspected = httpx.post(
        setup.idp.metadata["introspection_endpoint"],
        data={"token": answer["refresh_token"]},
        auth=("web", SECRET),
    ).json()
    assert introspected == {"active": False}, "the refresh token issued too late is revoked"


# --- 6. roles follow the tokens --------------------------------------------------------------


def test_roles_follow_refreshed_tokens(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    """As with Keycloak's defaults, the roles are in the access token only (the ID token has
    none without the "roles" scope): the session's roles come from there, and change with it."""
    web = make_web(shell, write_config(setup, scope="openid profile email"))
    assert "admin" in signed_in(web)["roles"]
    assert "admin" in web.browser.get("/private").json()["roles"]  # remembered now
    try:
        setup.idp.set_accounts({**ACCOUNTS, "alice": {"realm_access": {"roles": ["user"]}}})
        aged = age_session(web, setup, seconds_left=-1)
        web.browser.http.cookies.clear()
        refreshed = web.browser.get("/private", cookies=aged)
        assert refreshed.status_code == 200
        assert refreshed.json()["roles"] == ["user"], "the role removed at the server is gone"
        renewed = {
            h.split("=", 1)[0]: h.split("=", 1)[1].split(";", 1)[0]
            for h in refreshed.headers.get_list("set-cookie")
            if h.startswith("oidc_session")
        }
        assert "admin" not in web.browser.get("/private", cookies=renewed).json()["roles"]
    finally:
        setup.idp.set_accounts(ACCOUNTS)


# --- 7. a slow server does not stall the app ---------------------------------------------------


def test_a_hanging_token_endpoint_does_not_queue_a_session(
    setup: Setup, make_web: Callable[..., Web]
) -> None:
    gated = GatedTransport(fail=True)
    web = make_web("wsgi", write_config(setup), http=httpx.Client(transport=gated))
    signed_in(web)
    cookies = age_session(web, setup, seconds_left=3)  # valid, but inside the refresh margin
    transport = httpx.WSGITransport(app=web.middleware)

    def request() -> httpx.Response:
        with httpx.Client(transport=transport, base_url=APP) as http:
            header = "; ".join(f"{k}={v}" for k, v in cookies.items())
            return http.get("/private", headers={"Cookie": header})

    leader, _ = run_in_thread(request)
    assert gated.entered.wait(10)
    followers = [run_in_thread(request) for _ in range(5)]
    for thread, results in followers:
        thread.join(10)
        assert not thread.is_alive(), "a request with a valid token waited for the refresh"
        assert results[0].status_code == 200
    gated.gate.set()
    leader.join(20)
    expired = age_session(web, setup, seconds_left=-1)
    cookies.clear()
    cookies.update(expired)
    session_key_calls = gated.refreshes
    answer = request()  # expired now: the remembered failure answers at once, no new call
    assert answer.status_code == 200, "the server is down: the session goes on as it is"
    assert gated.refreshes == session_key_calls == 1


# --- 8. the principal is never a user-chosen fallback ------------------------------------------


def test_principal_falls_back_to_sub_only(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    missing = make_web(shell, write_config(setup, 'principal-attribute = "nickname"'))
    assert signed_in(missing, "alice")["user"] == "alice"  # sub, whatever preferred_username
    by_email = make_web(shell, write_config(setup, 'principal-attribute = "email"'))
    assert signed_in(by_email, "eve")["user"] == "eve", "an unverified email is not a name"
    verified = make_web(shell, write_config(setup, 'principal-attribute = "email"'))
    assert signed_in(verified, "alice")["user"] == "alice@example.test"


def test_preferred_username_is_not_the_fallback(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    try:
        setup.idp.set_accounts({**ACCOUNTS, "mallory": {"preferred_username": "admin"}})
        web = make_web(shell, write_config(setup, 'principal-attribute = "nickname"'))
        assert signed_in(web, "mallory")["user"] == "mallory"
    finally:
        setup.idp.set_accounts(ACCOUNTS)


# --- 9. bad requests are 400, not 503 ----------------------------------------------------------


def test_malformed_input_is_a_400(
    setup: Setup, make_web: Callable[..., Web], shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    web = make_web(shell, write_config(setup))
    web.browser.get("/oidc/login?next=/")
    with caplog.at_level(logging.DEBUG, logger="adapter"):
        state = web.browser.get("/oidc/callback?code=x&state=%C3%A9t%C3%A9")
        assert state.status_code == 400
        csrf = signed_in(web)["csrf"]
        fields = "&".join(f"f{i}=x" for i in range(50))
        form = web.browser.post(
            "/oidc/logout",
            content=f"csrf={csrf}&{fields}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 400
    assert web.browser.get("/private").status_code == 200, "nothing ended by a bad form"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- 10. bounded memory under abuse --------------------------------------------------------------


def test_junk_cookies_do_not_grow_the_decision_cache(
    setup: Setup, make_web: Callable[..., Web]
) -> None:
    web = make_web("asgi", write_config(setup))
    signed_in(web)
    session = web.browser.session_cookies()["oidc_session"]
    middleware = web.middleware
    loop = asyncio.new_event_loop()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def call(junk: str) -> None:
        cookie = f"junk={junk}; oidc_session={session}".encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/private",
            "raw_path": b"/private",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8765"), (b"cookie", cookie)],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8765),
        }
        loop.run_until_complete(middleware(scope, receive, send))

    gc.collect()  # earlier tests' middlewares go, and their event threads with them
    call("warm-up")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(10_000):
        call(f"{index}-" + "j" * 2000)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    loop.close()
    assert statuses.count(200) == 10_001
    assert grown < 3 * 1024 * 1024, f"grew by {grown} bytes"
    assert len(web.core.decisions) == 1


# --- 12. cookies are bound to this app and kept to its scheme ----------------------------------


def test_apps_sharing_a_session_secret_do_not_share_sessions(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    first = make_web(shell, write_config(setup))
    signed_in(first)
    cookies = first.browser.session_cookies()
    second = make_web(shell, write_config(setup, client_id="web2"))
    answer = second.browser.get("/private", cookies=cookies, headers={"Accept": "*/json"})
    assert answer.status_code == 401


def test_https_gets_secure_host_prefixed_cookies(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    web = make_web(shell, write_config(setup, 'ssl-required = "none"'), base=HTTPS_APP)
    start = web.browser.get("/oidc/login?next=/private")
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("__Host-oidc_login=")
    assert "; Secure" in cookie
    assert "Path=/;" in cookie
    assert "Domain" not in cookie
    page = web.browser.walk(start)
    assert page.status_code == 200
    assert page.json()["user"] == "alice"
    names = {c.name for c in web.browser.http.cookies.jar}
    assert "__Host-oidc_session" in names
    assert "oidc_session" not in names
    assert web.browser.get("/private").json()["user"] == "alice", "and the session works"
    plain = {"oidc_session": next(c.value for c in web.browser.http.cookies.jar
                                  if c.name == "__Host-oidc_session")}  # fmt: skip
    web.browser.http.cookies.clear()
    tossed = web.browser.get("/private", cookies=plain, headers={"Accept": "*/json"})
    assert tossed.status_code == 401, "over https only the prefixed cookie counts"


# --- 13. large tokens sign in ------------------------------------------------------------------


def test_large_tokens_sign_in_with_the_server_side_store(
    setup: Setup, make_web: Callable[..., Web], shell: str
) -> None:
    web = make_web(shell, write_config(setup, 'session-store = "memory"'))
    page = signed_in(web, "big")
    assert len(page["roles"]) == 1800
    memory = web.middleware.shell.memory_store
    (sid,) = list(memory._sessions)
    data = memory.load(sid)
    assert data is not None
    assert len(data["id"]) > 16_384, "the ID token is over the bearer limit"


def test_a_session_in_many_cookies_warns(
    setup: Setup, make_web: Callable[..., Web], shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    web = make_web(shell, write_config(setup))
    with caplog.at_level(logging.WARNING, logger="adapter"):
        assert len(signed_in(web, "medium")["roles"]) == 300
    assert len([n for n in web.browser.session_cookies() if n.startswith("oidc_session")]) > 3
    assert any('session-store = "memory"' in r.getMessage() for r in caplog.records)


def test_oversized_bearer_tokens_name_the_limit(
    setup: Setup, make_web: Callable[..., Web], shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    web = make_web(shell, write_config(setup))
    with caplog.at_level(logging.INFO, logger="adapter"):
        assert web.browser.get("/api", headers=bearer("a" * 20_000 + ".b.c")).status_code == 401
    assert any("16384-byte limit" in r.getMessage() for r in caplog.records)


# --- 14. websockets check Origin -----------------------------------------------------------------


def test_cookie_websockets_must_come_from_this_origin(
    setup: Setup, make_web: Callable[..., Web]
) -> None:
    config = write_config(setup, 'websocket-origins = ["https://chat.example.com"]')
    web = make_web("asgi", config)
    signed_in(web)
    cookie = "; ".join(f"{k}={v}" for k, v in web.browser.session_cookies().items())
    with TestClient(web.middleware) as client:  # websockets go to ws://testserver
        for origin in ("http://testserver", "https://chat.example.com"):
            headers = {"cookie": cookie, "origin": origin}
            with client.websocket_connect("/ws", headers=headers) as socket:
                assert json.loads(socket.receive_text())["user"] == "alice"
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect(
                "/ws", headers={"cookie": cookie, "origin": "https://evil.example"}
            ) as socket,
        ):
            socket.receive_text()
        assert closed.value.code == 1008


def test_callback_state_is_compared_safely(setup: Setup, make_web: Callable[..., Web]) -> None:
    """The state of a real login, with a non-ASCII character appended: 400, not a 503."""
    web = make_web("wsgi", write_config(setup))
    start = web.browser.get("/oidc/login?next=/")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    answer = web.browser.get(urljoin(APP, f"/oidc/callback?code=x&state={state}%E2%82%AC"))
    assert answer.status_code == 400
