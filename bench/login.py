"""The login round trip and its callback: the adapter against authlib's Starlette client.

Two rows (issue 26):

- **login round trip**: protected page -> the authorize redirect -> the real test identity
  server's login and consent forms (tests/idp, node oidc-provider, over HTTP on 127.0.0.1) ->
  the callback -> the first page, signed in. One app is the adapter (``OIDCMiddleware``) in
  front of a one-route Starlette app; the other is the code authlib's docs show for Starlette
  (``OAuth().register(..., server_metadata_url=...)``, ``authorize_redirect``,
  ``authorize_access_token``, the user kept in Starlette's ``SessionMiddleware``). Each login
  is walked by an httpx client that reaches the app in-process (ASGI transport) and the server
  over HTTP, a fresh cookie jar each time. **The server's own time is subtracted**: every call
  any httpx client makes to it (the browser's and the app's own: discovery, the code exchange,
  the keys) goes through ``httpx.AsyncHTTPTransport.handle_async_request``, which is wrapped
  for the row to time the call until its body is read (connect, send, the server's work,
  receive), and that time is taken off the login's. What remains is the apps' work and the
  browser's httpx work (the same requests for both, bar one redirect).
  Also reported: the apps' time alone (each ASGI call to the app, less the server calls made
  inside it). Logins run turn about, one each; the rows are medians per login.
- **callback**: only the callback request, the token endpoint answered in-process by one
  ``MockTransport`` returning a token response prepared before the clock (an RS256 ID token
  with the login's nonce and ``at_hash``, an opaque access token, a refresh token), the same
  for both: the adapter's callback (state cookie, code exchange, ID token check, session
  sealed into its cookie, redirect) vs authlib's ``authorize_access_token`` plus
  ``request.session["user"] = ...`` written by ``SessionMiddleware`` (its state read from the
  session cookie the authorize redirect set). authlib gets the mock as ``client_kwargs=
  {"transport": ...}``, so it builds no TLS context per call here. Each callback is timed on
  its own, turn about (``bench.measure.alternated``); every login is begun (and its token
  response made) before the clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from adapter import OIDCMiddleware, load_config
from bench.measure import Row, alternated

APP = "http://127.0.0.1:8765"
CLIENT_ID = "web"
CLIENT_SECRET = "bench-login-client-secret-" + "c" * 24  # a benchmark fixture
SESSION_SECRET = "bench-login-session-secret-0123456789abcdef"  # noqa: S105 - a fixture
SCOPE = "openid profile email"
CALLBACK = "/oidc/callback"  # both apps' redirect URI: one client at the server
LOGIN_TARGET = 1.0
CALLBACK_TARGET = 1.0
LOGIN_NAME = "login round trip: oidc-adapter vs authlib (Starlette client)"
CALLBACK_NAME = "callback: oidc-adapter vs authlib authorize_access_token + session write"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


# --- the apps ------------------------------------------------------------------------------------


def profile_app() -> Any:
    """The app behind the adapter: one page that greets the signed-in user."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def profile(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.user.claims['sub']}")

    return Starlette(routes=[Route("/profile", profile)])


def adapter_app(issuer: str, http: httpx.AsyncClient | None = None) -> OIDCMiddleware:
    config = load_config(
        {
            "issuer": issuer,
            "client-id": CLIENT_ID,
            "scope": SCOPE,
            "session-secret": SESSION_SECRET,
            "credentials": {"method": "client_secret_basic", "secret": CLIENT_SECRET},
        }
    )
    return OIDCMiddleware(profile_app(), config, http=http)


def authlib_app(issuer: str, client_kwargs: dict[str, Any] | None = None) -> Any:
    """authlib's Starlette client as its docs show it (the user kept in SessionMiddleware);
    the protected page starts the login itself, as the adapter's does. ``client_kwargs``
    beyond the scope and PKCE (a test transport) are for the callback row only."""
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401 - its filter ("always") first, so ours below wins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # authlib prefers httpx2; it still uses httpx
        from authlib.integrations.starlette_client import OAuth  # type: ignore[import-untyped]
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    oauth = OAuth()
    oauth.register(
        name="idp",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", **(client_kwargs or {})},
    )

    async def profile(request: Request) -> Response:
        user = request.session.get("user")
        if not user:
            redirect_uri = request.url_for("auth")
            return await oauth.idp.authorize_redirect(request, redirect_uri)  # type: ignore[no-any-return]
        return PlainTextResponse(f"hello {user['sub']}")

    async def auth(request: Request) -> Response:
        token = await oauth.idp.authorize_access_token(request)
        request.session["user"] = dict(token["userinfo"])
        return RedirectResponse(url="/profile")

    return Starlette(
        routes=[Route("/profile", profile), Route(CALLBACK, auth, name="auth")],
        middleware=[Middleware(SessionMiddleware, secret_key=SESSION_SECRET)],
    )


# --- the login round trip against the real server ------------------------------------------------


@dataclass
class Clock:
    """Seconds spent in calls to the identity server, and in the app (less its server calls)."""

    server: float = 0.0
    server_calls: int = 0
    app: float = 0.0


@contextlib.contextmanager
def server_time(clock: Clock) -> Iterator[None]:
    """Time every call through ``httpx.AsyncHTTPTransport`` (to the identity server: nothing
    else is reached over the network here), its body read before the clock stops."""
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def handle(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        response = await original(self, request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        try:
            body = b"".join([chunk async for chunk in stream])
        finally:
            await stream.aclose()
        clock.server += time.perf_counter() - start
        clock.server_calls += 1
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(body),
            extensions=response.extensions,
        )

    httpx.AsyncHTTPTransport.handle_async_request = handle  # type: ignore[method-assign]
    try:
        yield
    finally:
        httpx.AsyncHTTPTransport.handle_async_request = original  # type: ignore[method-assign]


def clocked(app: ASGIApp, clock: Clock) -> ASGIApp:
    """``app``, its time (less the server calls it makes) added to ``clock.app``."""

    async def timed_app(scope: Scope, receive: Any, send: Any) -> None:
        start, server_before = time.perf_counter(), clock.server
        try:
            await app(scope, receive, send)
        finally:
            clock.app += time.perf_counter() - start - (clock.server - server_before)

    return timed_app


@dataclass
class Walker:
    """A browser for one app: in-process to the app, over HTTP to the identity server."""

    app: ASGIApp
    issuer: str
    clock: Clock = field(default_factory=Clock)
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(
            mounts={
                APP: httpx.ASGITransport(app=clocked(self.app, self.clock)),
                "all://": httpx.AsyncHTTPTransport(),
            },
            timeout=10,
        )

    async def log_in(self) -> tuple[float, float, float, int]:
        """One login from a fresh cookie jar: (seconds, of which the server's, of which the
        app's, server calls)."""
        self.http.cookies.clear()
        clock = self.clock
        server, app, calls = clock.server, clock.app, clock.server_calls
        start = time.perf_counter()
        response = await self.http.get(f"{APP}/profile")
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                response = await self.http.get(location)
                continue
            if not str(response.url).startswith(self.issuer):
                break
            form = response.text.split('action="', 1)[1].split('"', 1)[0]
            prompt = "login" if 'name="login"' in response.text else "consent"
            data = {"prompt": prompt, "login": "alice", "password": "any"}
            response = await self.http.post(urljoin(str(response.url), form), data=data)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, (response.status_code, response.text[:300])
        assert response.text == "hello alice", response.text[:300]
        assert str(response.url) == f"{APP}/profile", response.url
        return elapsed, clock.server - server, clock.app - app, clock.server_calls - calls


def login_rows(rounds: int, quick: bool) -> list[Row]:
    """The login round trip against the real test identity server (started here, stopped
    after), the server's time subtracted; and the callback with the token endpoint answered
    in-process, the same for both."""
    return _round_trip_rows(rounds, quick) + callback_rows(rounds, quick)


def _round_trip_rows(rounds: int, quick: bool) -> list[Row]:
    from tests.idp_server import IdentityServer
    from tests.web_client import web_client

    logins = 1 if quick else 6  # per round, each side
    rounds = 1 if quick else rounds
    loop = asyncio.new_event_loop()
    clock = Clock()  # one login runs at a time: each login reads its own share of it
    with (
        tempfile.TemporaryDirectory(prefix="bench-login-") as directory,
        IdentityServer([web_client(CLIENT_SECRET)], tmp_dir=Path(directory)) as idp,
        server_time(clock),
    ):
        ours = Walker(adapter_app(idp.issuer), idp.issuer, clock)
        theirs = Walker(authlib_app(idp.issuer), idp.issuer, clock)
        for walker in (ours, theirs):  # discovery and keys fetched, connections open
            loop.run_until_complete(walker.log_in())
        samples: dict[str, list[tuple[float, float, float, int]]] = {"ours": [], "theirs": []}
        for index in range(rounds * logins):
            order = (("ours", ours), ("theirs", theirs))
            for name, walker in order if index % 2 == 0 else order[::-1]:
                samples[name].append(loop.run_until_complete(walker.log_in()))
        for walker in (ours, theirs):
            loop.run_until_complete(walker.http.aclose())
    loop.close()
    net = {name: [s[0] - s[1] for s in runs] for name, runs in samples.items()}
    in_app = {name: [s[2] for s in runs] for name, runs in samples.items()}
    calls = {name: runs[-1][3] for name, runs in samples.items()}
    return [
        Row(
            LOGIN_NAME + ", server time subtracted",
            statistics.median(net["ours"]),
            statistics.median(net["theirs"]),
            LOGIN_TARGET,
            note=f"server calls per login: {calls['ours']} vs {calls['theirs']}",
        ),
        Row(
            LOGIN_NAME + ", in the app only",
            statistics.median(in_app["ours"]),
            statistics.median(in_app["theirs"]),
        ),
    ]


# --- the callback, the token endpoint answered in-process ----------------------------------------


def callback_rows(rounds: int, quick: bool) -> list[Row]:
    """The callback request alone, through each app, the token endpoint answered in-process
    with a response prepared before the clock (one ``MockTransport`` handler for both)."""
    # Each call timed on its own, turn about with the other (bench.measure.alternated):
    # a millisecond call, on a shared machine whose speed drifts within a second.
    calls = 3 if quick else 40 * rounds
    idp = MockIdentityServer()
    loop = asyncio.new_event_loop()
    transport = httpx.MockTransport(idp.handle)
    ours = adapter_app(MOCK_ISSUER, http=httpx.AsyncClient(transport=transport))
    # authlib passes client_kwargs to every client it makes: discovery, keys and the token
    # endpoint all reach the mock (and no TLS context is built per client, as it is without).
    theirs = authlib_app(MOCK_ISSUER, client_kwargs={"transport": transport})
    needed = calls + max(1, calls // 20)  # alternated's warm-up calls, then the timed ones
    answers: dict[str, set[tuple[int, bool]]] = {"ours": set(), "theirs": set()}

    def caller(name: str, app: Any, session: str) -> Callable[[], object]:
        prepared = iter([idp.prepare(loop, app) for _ in range(needed)])
        record = answers[name]

        def call() -> object:
            query, cookie = next(prepared)
            status, cookies, _ = loop.run_until_complete(asgi_get(app, CALLBACK, query, cookie))
            record.add((status, session in cookies))  # redirected, the session written
            return status

        return call

    ours_time, theirs_time = alternated(
        caller("ours", ours, "oidc_session"), caller("theirs", theirs, "session"), calls
    )
    loop.close()
    assert answers["ours"] == {(302, True)}, answers["ours"]
    assert answers["theirs"] == {(307, True)}, answers["theirs"]  # RedirectResponse's 307
    assert idp.exchanged == 2 * needed, "every callback exchanged its code"
    return [
        Row(
            CALLBACK_NAME + ", token endpoint mocked",
            ours_time,
            theirs_time,
            CALLBACK_TARGET,
        )
    ]


MOCK_ISSUER = "https://sso.example.com/realms/bench-login"


class MockIdentityServer:
    """Discovery, keys and a token endpoint answering each code with a response prepared
    before the clock (an RS256 ID token carrying the login's nonce)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from joserfc.jwk import RSAKey

        from adapter.jose import encode_header, make_signer

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = {**RSAKey.import_key(key.public_key()).as_dict(), "kid": "k1", "alg": "RS256"}
        jwk["use"] = "sig"
        self.sign = make_signer("RS256", key)
        self.header = encode_header({"alg": "RS256", "kid": "k1", "typ": "JWT"})
        self.discovery = json.dumps(
            {
                "issuer": MOCK_ISSUER,
                "authorization_endpoint": MOCK_ISSUER + "/auth",
                "token_endpoint": MOCK_ISSUER + "/token",
                "jwks_uri": MOCK_ISSUER + "/jwks",
                "end_session_endpoint": MOCK_ISSUER + "/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        ).encode()
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        self.tokens: dict[str, bytes] = {}
        self.exchanged = 0
        self.json = [(b"content-type", b"application/json")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/token"):
            code = parse_qs(request.content.decode())["code"][0]
            self.exchanged += 1
            return httpx.Response(200, headers=self.json, content=self.tokens.pop(code))
        if path.endswith("/jwks"):
            return httpx.Response(200, headers=self.json, content=self.jwks)
        return httpx.Response(200, headers=self.json, content=self.discovery)

    def prepare(self, loop: asyncio.AbstractEventLoop, app: Any) -> tuple[bytes, str]:
        """A login begun at ``app`` (its authorize redirect, the state it keeps in a cookie)
        and the server's answer to its code, made ready: the callback's query and cookie."""
        from adapter.jose import sign_compact

        path, query_string = "/profile", b""
        cookies: dict[str, str] = {}
        for _ in range(3):  # the adapter's protected page sends the browser to its login path
            jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
            status, set_now, location = loop.run_until_complete(
                asgi_get(app, path, query_string, jar)
            )
            assert status in (302, 303, 307), status
            cookies.update(set_now)
            if location.startswith(MOCK_ISSUER):
                break
            path, _, rest = location.partition("?")
            query_string = rest.encode()
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        access_token = secrets.token_urlsafe(700)  # opaque; as long as a Keycloak JWT
        digest = hashlib.sha256(access_token.encode()).digest()
        now = int(time.time())
        claims = {
            "iss": MOCK_ISSUER,
            "sub": "alice",
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": query["nonce"],
            "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
            "sid": secrets.token_hex(16),
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Liddell",
            "preferred_username": "alice",
        }
        code = secrets.token_urlsafe(32)
        self.tokens[code] = json.dumps(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "refresh_token": secrets.token_urlsafe(500),
                "id_token": sign_compact(self.header, claims, self.sign),
                "scope": SCOPE,
            }
        ).encode()
        callback_query = f"code={code}&state={query['state']}".encode()
        return callback_query, "; ".join(f"{k}={v}" for k, v in cookies.items())


async def asgi_get(
    app: Any,
    path: str,
    query: bytes = b"",
    cookie: str = "",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[str, str], str]:
    """GET ``path?query`` through ``app`` in-process, as a browser (``Accept: text/html``)
    sends it: status, cookies set, Location."""
    headers = [(b"host", b"127.0.0.1:8765"), (b"accept", b"text/html"), *(extra or [])]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8765),
    }
    sent: list[tuple[int, list[tuple[bytes, bytes]]]] = []
    body = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if body:
            return body.pop()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append((message["status"], list(message.get("headers", []))))

    await app(scope, receive, send)
    status, raw = sent[0]
    cookies: dict[str, str] = {}
    location = ""
    for name, value in raw:
        if name.lower() == b"set-cookie":
            pair = value.decode().split(";", 1)[0]
            key, _, val = pair.partition("=")
            cookies[key.strip()] = val
        elif name.lower() == b"location":
            location = value.decode()
    return status, cookies, location
