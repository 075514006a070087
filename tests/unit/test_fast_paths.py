"""The shells' shortcuts (issue 15): requests without credentials are decided before any
request object is built, and a bearer token seen before reuses its decision. These tests hold
the shortcuts to what the full path decides for the same request, so a fast path can skip work
but never a check: an expired token or an ``[[access]]`` rule always takes the full path."""

from __future__ import annotations

import asyncio
import io
import secrets
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, load_config
from adapter.asgi import WIRE as ASGI_WIRE
from adapter.asgi import app_path
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.web._decisions import server_names
from adapter.web._steps import Proceed, Respond, drive
from adapter.web.core import WebCore
from adapter.web.entry import Front

ISSUER = "https://sso.example.com/realms/fast"
PATHS = [
    "/", "/public", "/public/", "/public/page", "/publicity", "/private", "/private/x",
    "/oidc/login", "/oidc/callback", "/oidc/logout", "/k_jwks", "/caf\u00e9", "/a%2Fb",
    "/" + "x" * 3000, "/public/admin", "/public/admin/x", "/public/page/x", "/private/y",
]  # fmt: skip
# Methods as clients send them: servers pass a lower-case method on as it came (h11).
METHODS = ["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE", "get", "head", "dElEtE", "options"]
# Rules that overlap the public paths (a guarded path is never anonymous), one by method only
# (GET covers HEAD), one beside them.
RULES = [
    {"path": "/public/admin/*", "roles": ["admin"]},
    {"path": "/public/page", "methods": ["get"], "roles": ["admin"]},
    {"path": "/private/*", "methods": ["DELETE"], "roles": ["admin"]},
]
ACCEPTS = [None, "", "*/*", "text/html", "application/json", "text/html,application/json",
           "image/png"]  # fmt: skip


def unreachable(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"an anonymous request must not reach the server: {request.url}")


def config(bearer_only: bool) -> Any:
    return load_config(
        {
            "issuer": ISSUER,
            "client-id": "app",
            "public-client": True,
            "session-secret": "fast-path-session-secret-0123456789abcdef",
            "public-paths": ["/public", "/caf\u00e9"],
            "bearer-only": bearer_only,
            "access": RULES,
        }
    )


ASGI = {
    flag: OIDCMiddleware(
        lambda s, r, p: None,
        config(flag),
        http=httpx.AsyncClient(transport=httpx.MockTransport(unreachable)),
    )
    for flag in (False, True)
}
WSGI = {
    flag: OIDCWSGIMiddleware(
        lambda e, s: [b""],
        config(flag),
        http=httpx.Client(transport=httpx.MockTransport(unreachable)),
    )
    for flag in (False, True)
}


def asgi_shortcut(middleware: OIDCMiddleware, scope: dict[str, Any]) -> Respond | Proceed | None:
    """What the ASGI shell's shortcut answers for ``scope``: the entry, read through the
    shell's own wire, with the values the shell hands it."""
    _, front = middleware.shell.front()
    path, root = app_path(scope)
    method, https = scope["method"].upper(), scope.get("scheme") == "https"
    return front.shortcut(ASGI_WIRE, scope, method, path, root, https)


def front_of(core: WebCore) -> Front:
    """The entry built with ``core`` (by its shell, for the current state)."""
    for middleware in (*ASGI.values(), *WSGI.values()):
        _, front = middleware.shell.front()
        if front.core is core:
            return front
    raise AssertionError("no shell holds this core")


def full_path(core: WebCore, request: Any) -> Respond | Proceed | None:
    """What :meth:`WebCore.handle` decides, or None when it needs the server (a login route)."""
    try:
        outcome: Respond | Proceed = drive(core.handle(request), lambda step: _needs_io(step))
    except _NeedsIO:
        return None
    return outcome


class _NeedsIO(Exception):
    pass


def _needs_io(step: object) -> object:
    raise _NeedsIO


def never_anonymous_where_guarded(
    core: WebCore, method: str, path: str, full: Respond | Proceed | None
) -> None:
    """A path an ``[[access]]`` rule covers (for this method, in any case) needs an identity,
    whatever ``public-paths`` says: an anonymous request there is refused (401 or the login
    redirect), unless it is a preflight (answered by the app's CORS alone, with no identity)."""
    if core.guarded(path, method) and path not in core.own_paths:
        assert full is not None
        assert isinstance(full, Respond) or full.preflight, (method, path, full)


def same(fast: Respond | Proceed, full: Respond | Proceed | None) -> None:
    assert full is not None, "the fast path answered a request the full path sends to the server"
    assert type(fast) is type(full)
    if isinstance(fast, Respond):
        assert isinstance(full, Respond)
        assert (fast.status, fast.headers, fast.body) == (full.status, full.headers, full.body)
    else:
        assert isinstance(full, Proceed)
        assert (fast.identity, fast.set_cookies, fast.preflight) == (None, [], False)
        assert (full.identity, full.set_cookies, full.preflight) == (None, [], False)


def headers_for(
    accept: str | None, fetch_mode: str | None, xhr: bool, origin: bool
) -> dict[str, str]:
    headers = {"host": "app.example.com"}
    if accept is not None:
        headers["accept"] = accept
    if fetch_mode is not None:
        headers["sec-fetch-mode"] = fetch_mode
    if xhr:
        headers["x-requested-with"] = "XMLHttpRequest"
    if origin:
        headers["origin"] = "https://other.example.com"
        headers["access-control-request-method"] = "POST"
    return headers


REQUESTS = st.tuples(
    st.sampled_from(METHODS),
    st.sampled_from(PATHS),
    st.sampled_from(["", "a=1", "next=/x&b=%20"]),
    st.sampled_from(["", "/myapp"]),
    st.sampled_from(ACCEPTS),
    st.sampled_from([None, "navigate", "cors"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(REQUESTS)
def test_asgi_anonymous_requests_are_decided_as_the_full_path_does(case: tuple[Any, ...]) -> None:
    method, path, query, root, accept, fetch_mode, xhr, origin, bearer_only = case
    middleware = ASGI[bearer_only]
    _, core = middleware.shell.core()
    headers = headers_for(accept, fetch_mode, xhr, origin)
    scope = {
        "type": "http", "method": method, "scheme": "https", "path": root + path,
        "raw_path": (root + path).encode("utf-8"), "root_path": root,
        "query_string": query.encode(), "server": ("app.example.com", 443),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    fast = asgi_shortcut(middleware, scope)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    request = asyncio.run(middleware._request(middleware.shell.front()[1], scope, receive))
    full = full_path(core, request)
    never_anonymous_where_guarded(core, method, path, full)
    if fast is None:
        # Left to the full path: the adapter's own routes, preflights, bearer-only mode.
        assert path in ("/oidc/login", "/oidc/callback", "/oidc/logout", "/k_jwks") or (
            method.upper() == "OPTIONS" or bearer_only
        )
        return
    same(fast, full)


@settings(max_examples=400, deadline=None)
@given(REQUESTS)
def test_wsgi_anonymous_requests_are_decided_as_the_full_path_does(case: tuple[Any, ...]) -> None:
    method, path, query, root, accept, fetch_mode, xhr, origin, bearer_only = case
    middleware = WSGI[bearer_only]
    _, core = middleware.shell.core()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": root,
        "PATH_INFO": path.encode("utf-8").decode("latin-1"), "QUERY_STRING": query,
        "SERVER_NAME": "app.example.com", "SERVER_PORT": "443", "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(),
    }  # fmt: skip
    for name, value in headers_for(accept, fetch_mode, xhr, origin).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    full = full_path(core, middleware._request(middleware.shell.front()[1], dict(environ)))
    never_anonymous_where_guarded(core, method, path, full)
    if full is None:
        return  # a login route: the server is needed, and no shortcut is taken there
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    reached: list[dict[str, Any]] = []

    def app(env: dict[str, Any], start: Any) -> list[bytes]:
        reached.append(env)
        start("200 OK", [])
        return [b"app"]

    middleware.app = app
    body = middleware(environ, lambda status, headers, *exc: answered.append((status, headers)))
    if isinstance(full, Respond):
        assert not reached
        assert answered[0][0].startswith(str(full.status))
        assert answered[0][1] == list(full.headers)  # a list of its own (PEP 3333)
        assert b"".join(body) == full.body
    else:
        assert reached
        assert reached[0]["oidc.identity"] is None
        assert not full.preflight or method.upper() == "OPTIONS"


# --- bearer tokens seen before ------------------------------------------------------------------

SERVER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SERVER_JWK = {**RSAKey.import_key(SERVER_KEY.public_key()).as_dict(), "kid": "s1", "alg": "RS256"}


def identity_server(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("openid-configuration"):
        endpoints = {"token_endpoint": ISSUER + "/token", "jwks_uri": ISSUER + "/jwks"}
        return httpx.Response(200, json={"issuer": ISSUER, **endpoints})
    return httpx.Response(200, json={"keys": [SERVER_JWK]})


def access_token(exp: float, roles: list[str]) -> str:
    header = encode_header({"alg": "RS256", "kid": "s1", "typ": "at+jwt"})
    now = int(time.time())
    claims = {
        "iss": ISSUER, "sub": "svc", "aud": "app", "client_id": "caller", "iat": now,
        "exp": int(exp), "jti": secrets.token_hex(8), "realm_access": {"roles": roles},
    }  # fmt: skip
    return sign_compact(header, claims, make_signer("RS256", SERVER_KEY))


def bearer_middleware() -> OIDCMiddleware:
    document = {
        "issuer": ISSUER, "client-id": "app", "public-client": True, "bearer-only": True,
        "access": [{"path": "/admin", "roles": ["admin"]}],
    }  # fmt: skip
    transport = httpx.MockTransport(identity_server)
    return OIDCMiddleware(lambda s, r, p: None, load_config(document),
                          http=httpx.AsyncClient(transport=transport))  # fmt: skip


def bearer_scope(token: str, path: str = "/api") -> dict[str, Any]:
    return {
        "type": "http", "method": "GET", "scheme": "https", "path": path, "raw_path": path.encode(),
        "root_path": "", "query_string": b"", "server": ("app.example.com", 443),
        "headers": [(b"host", b"app.example.com"), (b"authorization", f"Bearer {token}".encode())],
    }  # fmt: skip


def full_answer(middleware: OIDCMiddleware, scope: dict[str, Any]) -> int:
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware.app = app
    asyncio.run(middleware(scope, receive, send))
    return statuses[0]


def test_a_bearer_token_seen_before_is_reused_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = bearer_middleware()
    expires = time.time() + 100
    token = access_token(expires, ["user"])
    scope = bearer_scope(token)
    assert asgi_shortcut(middleware, scope) is None  # never seen: the full path
    assert full_answer(middleware, scope) == 200
    remembered = asgi_shortcut(middleware, scope)
    assert isinstance(remembered, Proceed)
    assert remembered.identity is not None
    assert remembered.identity.claims["sub"] == "svc"
    lowercase = bearer_scope(token)
    lowercase["headers"][1] = (b"authorization", f"bearer  {token}".encode())
    assert asgi_shortcut(middleware, lowercase) is remembered  # the same token
    later = expires + 1
    monkeypatch.setattr("adapter.web._decisions.time.time", lambda: later)
    assert asgi_shortcut(middleware, scope) is None, "an expired token is not reused"


def test_bearer_requests_under_an_access_rule_are_always_decided_in_full() -> None:
    middleware = bearer_middleware()
    user = bearer_scope(access_token(time.time() + 100, ["user"]), "/admin")
    assert full_answer(middleware, user) == 403
    assert asgi_shortcut(middleware, user) is None
    assert full_answer(middleware, user) == 403
    admin = bearer_scope(access_token(time.time() + 100, ["admin"]), "/admin")
    assert full_answer(middleware, admin) == 200
    assert asgi_shortcut(middleware, admin) is None  # the rule is checked each time


# --- remembered sessions, found in the raw Cookie header ----------------------------------------

REMEMBERED = "S3aLeD-" + "v" * 40  # a sealed value's shape: base64url, no spaces or quotes
EDGES = st.lists(
    st.sampled_from(["a", "=", ";", " ", "\t", '"', "\x85", "\xa0", "oidc_session"]), max_size=6
).map("".join)


@settings(max_examples=500, deadline=None)
@given(before=EDGES, after=EDGES, inner=st.sampled_from([REMEMBERED, f'"{REMEMBERED}"',
       f" {REMEMBERED}", REMEMBERED[:-1], REMEMBERED + "x", f"\x85{REMEMBERED}"]))  # fmt: skip
# Found by this test: a Latin-1 space (NEL) before an empty session cookie, which str.strip()
# removes and bytes.strip() did not (the entry then found the second cookie, the parser the first).
@example(before="\x85oidc_session=;", after="", inner=REMEMBERED)
def test_a_remembered_session_is_found_only_where_the_parser_finds_its_value(
    before: str, after: str, inner: str
) -> None:
    from adapter.web._http import parse_cookie_header

    middleware = ASGI[False]
    _, core = middleware.shell.core()
    outcome = Proceed(None)
    core.decisions.put(REMEMBERED, "sid-remembered", outcome, time.time() + 60, 100)
    name = core.cookies.session_name(False, "")
    header = f"{before}{name}={inner}{after}"
    found = front_of(core).cached_session(header.encode("latin-1"), False, "")
    if found is not None:
        assert found is outcome
        assert parse_cookie_header(header).get(name) == REMEMBERED, header
    assert front_of(core).cached_session(header, False, "") is found  # text (WSGI) and bytes agree
    if not before and not after and inner == REMEMBERED:
        assert found is outcome, "the usual header: the session cookie alone"


# --- signed-in requests: the remembered decision against the full path -------------------------

BOB = {"sub": "bob", "iss": ISSUER, "realm_access": {"roles": ["user"]}}
SIGNED_IN_REQUESTS = st.tuples(
    st.sampled_from(METHODS),
    st.sampled_from(PATHS),
    st.sampled_from([None, "text/html", "application/json"]),
    st.booleans(),  # a CORS preflight's headers (Origin, Access-Control-Request-Method)
    st.booleans(),  # which shell
)


def signed_in_cookie(core: WebCore) -> str:
    """A session cookie sealed as a login seals it (bob, no admin role), decided once in full
    so that its decision is remembered."""
    from adapter.web.session import Session

    session = Session.new(dict(BOB))
    sealed = core.cookies.codec.seal({"d": session.to_dict(), "t": int(time.time())}, "session")
    name = core.cookies.session_name(True, "")
    cookie = f"{name}={sealed}"
    request = WSGI[False]._request(
        WSGI[False].shell.front()[1], cookie_environ("GET", "/private", cookie, None, False)
    )
    assert isinstance(full_path(core, request), Proceed)
    assert front_of(core).cached_session(cookie, True, "") is not None, (
        "remembered for the shortcut"
    )
    return cookie


def cookie_environ(
    method: str, path: str, cookie: str, accept: str | None, preflight: bool
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": "", "SERVER_NAME": "app.example.com", "SERVER_PORT": "443",
        "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(),
        "HTTP_HOST": "app.example.com", "HTTP_COOKIE": cookie,
    }  # fmt: skip
    if accept is not None:
        environ["HTTP_ACCEPT"] = accept
    if preflight:
        environ["HTTP_ORIGIN"] = "https://other.example.com"
        environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"] = "DELETE"
    return environ


@settings(max_examples=400, deadline=None)
@given(SIGNED_IN_REQUESTS)
def test_a_remembered_session_answers_only_as_the_full_path_does(case: tuple[Any, ...]) -> None:
    """Lower-case and HEAD methods, rules over public paths and preflights that carry the
    cookie: wherever a shell reuses a remembered decision, the full path decides the same."""
    method, path, accept, preflight, asgi = case
    shell: OIDCMiddleware | OIDCWSGIMiddleware = ASGI[False] if asgi else WSGI[False]
    _, core = shell.shell.core()
    cookie = COOKIES.get(id(core)) or COOKIES.setdefault(id(core), signed_in_cookie(core))
    environ = cookie_environ(method, path, cookie, accept, preflight)
    full = full_path(core, WSGI[False]._request(WSGI[False].shell.front()[1], dict(environ)))
    fast: Respond | Proceed | None
    if isinstance(shell, OIDCMiddleware):
        headers = [(b"host", b"app.example.com"), (b"cookie", cookie.encode())]
        headers += [(b"accept", accept.encode())] if accept is not None else []
        if preflight:
            headers += [(b"origin", b"https://other.example.com")]
            headers += [(b"access-control-request-method", b"DELETE")]
        scope = {
            "type": "http", "method": method, "scheme": "https", "path": path,
            "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "server": ("app.example.com", 443), "headers": headers,
        }  # fmt: skip
        fast = asgi_shortcut(shell, scope)
    else:
        fast = wsgi_shortcut(shell, environ)
    if preflight and method.upper() == "OPTIONS":
        assert fast is None, "a preflight carries no identity, whatever it carries"
        if path not in core.own_paths:  # the adapter's own routes answer OPTIONS themselves
            assert isinstance(full, Proceed)
            assert full.preflight
            assert full.identity is None
        return
    if fast is None:
        return  # the full path decides: nothing to compare
    assert full is not None
    if isinstance(fast, Respond):  # /k_jwks: its prepared answer, the one the full path gives
        assert isinstance(full, Respond)
        assert (fast.status, fast.headers, fast.body) == (full.status, full.headers, full.body)
        return
    assert isinstance(fast, Proceed)
    assert isinstance(full, Proceed), (method, path, full)
    assert fast.identity == full.identity
    assert (fast.private, fast.vary_cookie) == (full.private, full.vary_cookie) == (True, True)


COOKIES: dict[int, str] = {}


def wsgi_shortcut(middleware: OIDCWSGIMiddleware, environ: dict[str, Any]) -> Proceed | None:
    """What the WSGI shell answers from memory (the app sees the identity without the core's
    full path running, and its answer gets the headers the shell adds), or None when the full
    path ran."""
    _, front = middleware.shell.front()
    ran: list[bool] = []
    handle = front.handle

    def spy(request: Any) -> Any:
        ran.append(True)
        return handle(request)

    seen: list[Any] = []
    sent: list[tuple[str, str]] = []

    def app(env: dict[str, Any], start: Any) -> list[bytes]:
        seen.append(env.get("oidc.identity"))
        start("200 OK", [])
        return [b""]

    original = middleware.app
    middleware.app = app
    front.handle = spy  # type: ignore[method-assign]
    try:
        middleware(dict(environ), lambda status, headers, *exc: sent.extend(headers))
    finally:
        front.handle = handle  # type: ignore[method-assign]
        middleware.app = original
    if ran or not seen:
        return None
    return Proceed(
        seen[0],
        private=("Cache-Control", "private") in sent,
        vary_cookie=("Vary", "Cookie") in sent,
    )


# --- both shells answer through the one entry --------------------------------------------------


def test_both_shells_answer_what_the_entry_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shells hold no decision of their own: whatever the entry answers for a request is
    what each shell sends, and where it answers nothing the full path (``Front.handle``)
    decides."""
    teapot = Respond(418, [("Content-Type", "text/plain")], b"decided by the entry")
    asked: list[str] = []

    def entry(self: Front, wire: Any, request: Any, method: str, path: str, *rest: Any) -> Any:
        asked.append(path)
        return teapot

    monkeypatch.setattr(Front, "shortcut", entry)
    for path in ("/k_jwks", "/private", "/public", "/oidc/login"):
        environ = cookie_environ("GET", path, "", None, False)
        statuses: list[str] = []
        body = WSGI[False](environ, lambda status, *_, sent=statuses: sent.append(status))
        assert statuses == ["418 I'm a Teapot"]
        assert b"".join(body) == teapot.body
        scope = {
            "type": "http", "method": "GET", "scheme": "https", "path": path,
            "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "server": ("app.example.com", 443), "headers": [(b"host", b"app.example.com")],
        }  # fmt: skip
        assert asgi_status(ASGI[False], scope) == 418
    assert asked == [p for p in ("/k_jwks", "/private", "/public", "/oidc/login") for _ in (0, 1)]


def asgi_status(middleware: OIDCMiddleware, scope: dict[str, Any]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return int(sent[0]["status"])


@pytest.mark.parametrize("name", [b"cookie", b"Cookie", b"COOKIE"])
def test_the_session_cookie_is_found_whatever_the_case_of_its_header_name(name: bytes) -> None:
    """The full path lowers header names; a server that sends ``Cookie`` must not make the
    shortcut take a signed-in user for an anonymous one (a login-redirect loop)."""
    middleware = ASGI[False]
    _, core = middleware.shell.core()
    cookie = COOKIES.get(id(core)) or COOKIES.setdefault(id(core), signed_in_cookie(core))
    scope = {
        "type": "http", "method": "GET", "scheme": "https", "path": "/private",
        "raw_path": b"/private", "root_path": "", "query_string": b"",
        "server": ("app.example.com", 443),
        "headers": [(b"host", b"app.example.com"), (name, cookie.encode())],
    }  # fmt: skip
    fast = asgi_shortcut(middleware, scope)
    assert isinstance(fast, Proceed)
    assert fast.identity is not None
    assert fast.identity.claims["sub"] == "bob"


# --- a session cookie seen for the first time: opened by the entry only where that is all ------

UNSEEN_STATES = [
    "fresh", "fresh, DPoP-bound", "fresh, no expiry", "refresh due",
    "refresh due, no refresh token", "ended", "logged out at the server",
    "older than session-max-age", "tampered", "another app's", "split",
]  # fmt: skip
UNSEEN_REQUESTS = st.tuples(
    st.sampled_from(UNSEEN_STATES),
    st.sampled_from(METHODS),
    st.sampled_from(PATHS),
    st.sampled_from(["", "theme=dark; ", " ", '"']),  # beside it, before it, at its edges
    st.booleans(),  # which shell
)


def unseen_cookie(core: WebCore, state: str) -> str:
    """A session cookie (``name=value``) this process has never decided, in ``state``."""
    from adapter.protocol.dpop import DPoPKey
    from adapter.web.session import Session, SessionCodec

    now = time.time()
    idp_sid = secrets.token_urlsafe(8)
    refresh = None if state.endswith("no refresh token") else "refresh-token"
    session = Session.new(
        {**BOB, "sid": idp_sid},
        access_token="access-token",
        refresh_token=refresh,
        expires_at=now + (2 if state.startswith("refresh due") else 3600),
    )
    if state == "fresh, no expiry":  # a token response without expires_in
        session.expires_at = None
    if state == "fresh, DPoP-bound":
        session.dpop_key = DPoPKey.generate().to_dict()
    stamp = int(now) - (core.web.session_max_age + 10 if state.startswith("older") else 0)
    codec = core.cookies.codec
    if state == "another app's":
        codec = SessionCodec([b"another app's session secret, as long as ours is"])
    value = codec.seal({"d": session.to_dict(), "t": stamp}, "session")
    if state == "ended":
        core.cookies.ended.end(session.sid, session.created_at, now + 3600)
    if state == "logged out at the server":
        core.cookies.logouts.apply(idp_sid, None, now + 1, now + 3600)
    if state == "tampered":
        value = value[:-5] + ("A" if value[-5] != "A" else "B") + value[-4:]
    name = core.cookies.session_name(True, "")
    if state == "split":
        return f"{name}=2~{value[:100]}; {name}.1={value[100:]}"
    return f"{name}={value}"


@settings(max_examples=500, deadline=None)
@given(UNSEEN_REQUESTS)
def test_an_unseen_session_is_opened_by_the_entry_only_as_the_full_path_decides(
    case: tuple[Any, ...],
) -> None:
    """The first request of a session this process has not seen (after a deploy; in each of
    many workers) is decided by the entry when opening the cookie is all the full path does,
    and then the decision is remembered; a refresh due, an ended or logged-out session, an
    old, tampered, foreign or split cookie, the adapter's own paths, ``[[access]]`` rules and
    preflights take the full path."""
    state, method, path, around, asgi = case
    shell: OIDCMiddleware | OIDCWSGIMiddleware = ASGI[False] if asgi else WSGI[False]
    _, core = shell.shell.core()
    cookie = unseen_cookie(core, state)
    if around in (" ", '"'):  # the parser strips these: the entry leaves such a value to it
        name, value = cookie.split("=", 1)
        cookie = f"{name}={around}{value}{around}"
    else:
        cookie = around + cookie
    environ = cookie_environ(method, path, cookie, None, False)
    scope = {
        "type": "http", "method": method, "scheme": "https", "path": path,
        "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "server": ("app.example.com", 443),
        "headers": [(b"host", b"app.example.com"), (b"cookie", cookie.encode())],
    }  # fmt: skip

    def shortcut() -> Respond | Proceed | None:
        if isinstance(shell, OIDCMiddleware):
            return asgi_shortcut(shell, dict(scope))
        return wsgi_shortcut(shell, dict(environ))

    fast = shortcut()
    if path == core.jwks_path:
        return  # the key ring's answer, whatever the request carries (above)
    reusable = core.may_reuse(path, method.upper())
    if state.startswith("fresh") and reusable and around in ("", "theme=dark; "):
        assert isinstance(fast, Proceed), "opened by the entry: nothing else to do"
        again = shortcut()
        assert again is not None, "and remembered"
        assert again.identity == fast.identity
    elif not state.startswith("fresh") or not reusable:
        assert fast is None, "the full path decides"
    full = full_path(core, WSGI[False]._request(WSGI[False].shell.front()[1], dict(environ)))
    if fast is None:
        return
    assert isinstance(fast, Proceed)
    assert isinstance(full, Proceed), (state, method, path, full)
    assert fast.identity is not None
    assert fast.identity == full.identity
    keys = (fast.identity.dpop_key, full.identity.dpop_key)  # compare=False in the dataclass
    thumbprints = [None if key is None else key.jkt for key in keys]
    assert thumbprints[0] == thumbprints[1]
    assert (thumbprints[0] is not None) == (state == "fresh, DPoP-bound")
    assert full.set_cookies == []
    assert not full.preflight
    assert (fast.private, fast.vary_cookie) == (full.private, full.vary_cookie) == (True, True)
    # Remembered by both paths (the full one remembered it again): a back-channel logout
    # records the end, then forgets the sessions it names; neither answer survives it.
    idp_sid = fast.identity.claims["sid"]
    core.cookies.logouts.apply(idp_sid, None, time.time() + 1, time.time() + 3600)
    core.decisions.forget_named(server_names(idp_sid, None))
    assert shortcut() is None, "logged out at the server: the full path decides"


def test_a_decision_made_across_a_clear_is_answered_but_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reload (or news that may have been missed) clears the remembered decisions while a
    request is opening a cookie: that request is answered, and its outcome, decided under the
    old configuration, is not remembered after the clear."""
    _, core = ASGI[False].shell.core()
    value = unseen_cookie(core, "fresh").split("=", 1)[1]
    opened = core.cookies.opened

    def reloaded_meanwhile(cookie: str | bytes) -> Any:
        session = opened(cookie)
        core.decisions.clear()
        return session

    monkeypatch.setattr(core.cookies, "opened", reloaded_meanwhile)
    assert isinstance(core.first_seen(value), Proceed)
    assert core.decisions.get(value) is None
    monkeypatch.undo()
    assert isinstance(core.first_seen(value), Proceed)
    assert core.decisions.get(value) is not None, "decided after the clear: remembered"


def test_the_full_path_does_not_remember_across_a_clear_either(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same for the full path: a clear while the session is loaded (its steps may wait on
    a store or on the other processes' news) leaves its outcome unremembered."""
    _, core = WSGI[False].shell.core()
    cookie = unseen_cookie(core, "fresh")
    value = cookie.split("=", 1)[1]
    load = core.cookies.load

    def cleared_meanwhile(request: Any, shared: bool = True) -> Any:
        session = yield from load(request, shared)
        core.decisions.clear()
        return session

    monkeypatch.setattr(core.cookies, "load", cleared_meanwhile)
    request = WSGI[False]._request(
        WSGI[False].shell.front()[1], cookie_environ("GET", "/private", cookie, None, False)
    )
    assert isinstance(full_path(core, request), Proceed)
    assert core.decisions.get(value) is None


def test_a_core_whose_configuration_was_replaced_remembers_nothing_more() -> None:
    """A request decided by the old configuration's core, after the new one's entry was built
    (a reload between the two): its outcome is answered, never remembered where the new
    configuration's entry would find it."""
    middleware = OIDCWSGIMiddleware(
        lambda e, s: [b""],
        config(False),
        http=httpx.Client(transport=httpx.MockTransport(unreachable)),
    )
    _, old = middleware.shell.core()
    value = unseen_cookie(old, "fresh").split("=", 1)[1]
    holder = middleware.shell._holder
    holder.swap(type(holder.state).load(config(False), previous=holder.state))
    _, new = middleware.shell.core()
    assert new is not old
    assert isinstance(old.first_seen(value), Proceed)
    assert new.decisions.get(value) is None, "decided under the old configuration"
    assert isinstance(new.first_seen(value), Proceed)
    assert new.decisions.get(value) is not None
