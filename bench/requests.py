"""Requests in-process: what the middleware adds to an ASGI/WSGI request, and /k_jwks.

Each row compares the app with the middleware against the same app bare, and the added cost
against what Starlette's ``SessionMiddleware`` (or Flask's own session) adds for reading a
valid cookie: the usual alternative for "who is signed in".
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, load_config
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.web.session import Session
from bench.measure import Row, added, alternated, median, pair, timed

ISSUER = "https://sso.example.com/realms/bench"
SECRET = "bench-session-secret-0123456789abcdef"  # noqa: S105 - a benchmark fixture
# A bearer token seen before reuses its decision, like a session cookie seen before.
BEARER_TARGET = 1 / 3
# /k_jwks against a bare endpoint serving the same constant bytes (issue 15's target).
JWKS_TARGET = 0.97


def config(**extra: Any) -> Any:
    return load_config(
        {
            "issuer": ISSUER,
            "client-id": "app",
            "public-client": True,
            "session-secret": SECRET,
            "token-audiences": ["api"],  # the bench tokens are for the API this app serves
            **extra,
        }
    )


@dataclass
class Server:
    """A MockTransport identity server (discovery, JWKS) and a signer of its access tokens."""

    idp: Callable[[httpx.Request], httpx.Response]
    token: Callable[[int], str]
    key: Any


def identity_server(alg: str = "RS256") -> Server:
    if alg == "ES256":
        key: Any = ec.generate_private_key(ec.SECP256R1())
        jwk = ECKey.import_key(key.public_key()).as_dict()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAKey.import_key(key.public_key()).as_dict()
    jwk = {**jwk, "kid": "s1", "alg": alg}
    discovery = {"issuer": ISSUER, "token_endpoint": ISSUER + "/t", "jwks_uri": ISSUER + "/jwks"}

    def idp(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=discovery)
        return httpx.Response(200, json={"keys": [jwk]})

    signer = make_signer(alg, key)
    header = encode_header({"alg": alg, "kid": "s1", "typ": "at+jwt"})
    now = int(time.time())

    def token(index: int) -> str:
        claims = {
            "iss": ISSUER,
            "sub": f"u{index}",
            "aud": "api",
            "client_id": "app",
            "iat": now,
            "exp": now + 3600,
            "jti": f"j{index}",
            "scope": "api:read",
        }
        return sign_compact(header, claims, signer)

    return Server(idp, token, key)


def server() -> tuple[Callable[[httpx.Request], httpx.Response], Callable[[int], str]]:
    """The RS256 identity server's transport handler and token signer."""
    made = identity_server()
    return made.idp, made.token


def session_cookie(middleware: OIDCMiddleware | OIDCWSGIMiddleware) -> str:
    """A valid session cookie with realistic (incompressible) tokens in it."""
    import secrets

    _, core = middleware.shell.core()
    session = Session.new(
        {"sub": "alice", "preferred_username": "alice", "realm_access": {"roles": ["user"]}},
        id_token=secrets.token_urlsafe(600),
        access_token=secrets.token_urlsafe(700),
        refresh_token=secrets.token_urlsafe(500),
        expires_at=time.time() + 36000,
    )
    sealed = core.cookies.sealed(session)
    return f"oidc_session={sealed}"


# --- ASGI ----------------------------------------------------------------------------------------


async def bare_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", home)])


Headers = list[tuple[bytes, bytes]]


def asgi_caller(
    app: Any,
    path: str = "/",
    headers: Headers | None = None,
    extra: Callable[[], Headers] | None = None,
) -> Callable[[], object]:
    """A function that sends one request through ``app`` (on one event loop, no sockets).

    ``extra`` adds headers made fresh for each request (a new bearer token, say).
    """
    loop = LOOP
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # as uvicorn says
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.example.com"), *(headers or [])],
        "client": ("127.0.0.1", 5000),
        "server": ("app.example.com", 80),
    }
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def call() -> object:
        request = dict(scope)
        if extra is not None:
            request["headers"] = [*scope["headers"], *extra()]
        body = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if body:
                return body.pop()
            await asyncio.Event().wait()  # as a server: nothing more until the client leaves
            raise AssertionError("unreachable")

        loop.run_until_complete(app(request, receive, send))
        return statuses.pop()

    return call


LOOP = asyncio.new_event_loop()


def asgi_rows(number: int, rounds: int) -> list[Row]:
    """Each request class through the ASGI shell, against what SessionMiddleware adds to the
    same request (no cookie for anonymous requests, a valid cookie for signed-in ones)."""
    idp, token = server()
    rows: list[Row] = []
    for name, app in (("bare ASGI app", bare_asgi), ("Starlette one-route app", starlette_app())):
        ours = OIDCMiddleware(
            app, config(), http=httpx.AsyncClient(transport=httpx.MockTransport(idp))
        )
        cookie = (b"cookie", session_cookie(ours).encode())
        with_ours = asgi_caller(ours, headers=[cookie])
        assert with_ours() == 200, "the session must be valid for this benchmark"
        with_theirs = session_middleware_caller(app)
        bare = asgi_caller(app)
        ours_times, theirs_times, bare_times = timed([with_ours, with_theirs, bare], number, rounds)
        rows.append(
            added_row(
                f"ASGI {name}: added per request vs SessionMiddleware's",
                ours_times, theirs_times, bare_times, 1 / 3,
                note=f"bare {median(bare_times) * 1e6:.1f} µs",
            )
        )  # fmt: skip
        rows.append(
            Row(f"ASGI {name}: with middleware vs bare", median(ours_times), median(bare_times))
        )
    rows += anonymous_asgi_rows(idp, number, rounds)
    rows += memory_store_asgi_row(idp, number, rounds)
    rows += static_file_rows(idp, number, rounds)
    rows += bearer_asgi_rows(idp, token, number, rounds)
    return rows


def added_row(
    name: str,
    subject: list[float],
    peer: list[float],
    bare: list[float],
    target: float | None,
    note: str = "",
) -> Row:
    """What ``subject`` adds over ``bare`` against what ``peer`` adds, from the same rounds."""
    ours, theirs = added(subject, bare), added(peer, bare)
    return Row(
        name, ours.value, theirs.value, target, note=note, noise=ours.noise,
        baseline_noise=theirs.noise,
    )  # fmt: skip


def anonymous_asgi_rows(idp: Any, number: int, rounds: int) -> list[Row]:
    """Requests with no cookie: a public page, and a protected one (401 for an API client,
    the login redirect for a browser), against SessionMiddleware on a request without one."""
    ours = OIDCMiddleware(
        bare_asgi,
        config(**{"public-paths": ["/", "/static"]}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(idp)),
    )
    public = asgi_caller(ours, "/")
    api = asgi_caller(ours, "/private", headers=[(b"accept", b"application/json")])
    page = asgi_caller(ours, "/private", headers=[(b"accept", b"text/html")])
    assert (public(), api(), page()) == (200, 401, 302)
    from starlette.middleware.sessions import SessionMiddleware

    theirs = asgi_caller(SessionMiddleware(bare_asgi, secret_key=SECRET), "/")
    bare = asgi_caller(bare_asgi, "/")
    times = timed([public, api, page, theirs, bare], number, rounds)
    public_t, api_t, page_t, theirs_t, bare_t = times
    vs = "added vs SessionMiddleware's (no cookie)"
    return [
        added_row(f"ASGI anonymous, public page: {vs}", public_t, theirs_t, bare_t, 0.5),
        added_row(f"ASGI anonymous, protected -> 401: {vs}", api_t, theirs_t, bare_t, 1.0),
        added_row(f"ASGI anonymous, protected -> 302: {vs}", page_t, theirs_t, bare_t, 1.0),
    ]


def memory_store_asgi_row(idp: Any, number: int, rounds: int) -> list[Row]:
    """A signed-in request whose session lives in this process's memory store (the cookie
    holds only its id): read from the store on every request, so a logout ends it at once."""
    ours = OIDCMiddleware(
        bare_asgi,
        config(**{"session-store": "memory"}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(idp)),
    )
    cookie = (b"cookie", stored_session_cookie(ours).encode())
    signed_in = asgi_caller(ours, headers=[cookie])
    assert signed_in() == 200, "the stored session must be valid for this benchmark"
    theirs = session_middleware_caller(bare_asgi)
    bare = asgi_caller(bare_asgi)
    ours_t, theirs_t, bare_t = timed([signed_in, theirs, bare], number, rounds)
    return [
        added_row(
            "ASGI signed in, memory store: added vs SessionMiddleware's",
            ours_t, theirs_t, bare_t, 1.0,
        )
    ]  # fmt: skip


def static_file_rows(idp: Any, number: int, rounds: int) -> list[Row]:
    """A public static file, anonymous: Starlette's StaticFiles mounted at /static."""
    import tempfile

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    directory = tempfile.mkdtemp(prefix="bench-static-")
    (Path(directory) / "app.css").write_text("body { font: 16px/1.5 system-ui }\n" * 40)
    site = Starlette(routes=[Mount("/static", StaticFiles(directory=directory))])
    ours = OIDCMiddleware(
        site,
        config(**{"public-paths": ["/static"]}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(idp)),
    )
    served = asgi_caller(ours, "/static/app.css")
    assert served() == 200
    bare = asgi_caller(site, "/static/app.css")
    ours_t, bare_t = timed([served, bare], max(1, number // 3), rounds)
    # A file response costs hundreds of µs with its thread hop, so what the middleware adds
    # (about a µs) is measured as a share of it, and reads noise when the hop's jitter hides it.
    ours = added(ours_t, bare_t)
    return [
        Row(
            "ASGI static file (StaticFiles), anonymous: added vs the bare file response",
            ours.value, median(bare_t), 0.03, noise=ours.noise,
        )
    ]  # fmt: skip


def bearer_asgi_rows(idp: Any, token: Callable[[int], str], number: int, rounds: int) -> list[Row]:
    """Bearer mode: a token seen before (cache) and one seen for the first time."""
    bearer = OIDCMiddleware(
        bare_asgi,
        config(**{"bearer-only": True}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(idp)),
    )
    seen = token(0)
    call_seen = asgi_caller(bearer, headers=[(b"authorization", f"Bearer {seen}".encode())])
    assert call_seen() == 200
    bare = asgi_caller(bare_asgi)
    # The baseline is timed in the same rounds: what SessionMiddleware adds to the same app.
    sessions = session_middleware_caller(bare_asgi)
    seen_times, session_times, bare_times = timed([call_seen, sessions, bare], number, rounds)
    rows = [
        added_row(
            "ASGI bearer, token seen before: added per request vs SessionMiddleware's",
            seen_times, session_times, bare_times, BEARER_TARGET,
        )
    ]  # fmt: skip
    count = max(1, number // 10)
    tokens = iter([token(i) for i in range(1, count * (rounds + 2) + 2)])
    first_seen = asgi_caller(
        bearer, extra=lambda: [(b"authorization", f"Bearer {next(tokens)}".encode())]
    )
    first_time, bare_time = pair(first_seen, bare, count, rounds)
    rows.append(
        Row("ASGI bearer, first-seen token: with middleware vs bare", first_time, bare_time)
    )
    return rows


def stored_session_cookie(middleware: OIDCMiddleware | OIDCWSGIMiddleware) -> str:
    """A session saved in the middleware's server-side store (memory or Redis), as a login
    would save it, and the cookie that names it."""
    import secrets

    _, core = middleware.shell.core()
    session = Session.new(
        {"sub": "alice", "sid": secrets.token_hex(8), "realm_access": {"roles": ["user"]}},
        id_token=secrets.token_urlsafe(600),
        access_token=secrets.token_urlsafe(700),
        refresh_token=secrets.token_urlsafe(500),
        expires_at=time.time() + 36000,
    )
    middleware.shell.store.save(session.sid, session.to_dict(), 3600)
    sealed = core.cookies.sealed(session)  # a server-side store: the cookie holds its id
    return f"oidc_session={sealed}"


def session_middleware_caller(app: Any) -> Callable[[], object]:
    """``app`` behind Starlette's SessionMiddleware, called with a valid session cookie."""
    from starlette.middleware.sessions import SessionMiddleware

    sessions = SessionMiddleware(app, secret_key=SECRET)
    cookie = _starlette_session_cookie(sessions)
    return asgi_caller(sessions, headers=[(b"cookie", cookie)])


def _starlette_session_cookie(middleware: Any) -> bytes:
    from base64 import b64encode

    data = b64encode(json.dumps({"user": "alice", "roles": ["user"]}).encode())
    return b"session=" + middleware.signer.sign(data)


def jwks_rows(calls: int) -> list[Row]:
    """``/k_jwks`` (200 and 304) through the middleware against a bare endpoint serving the
    same constant bytes, and against the least any middleware must do for it (route by path
    and method, compare the ETag, send prepared bytes): that floor is where the target lies."""
    idp, _ = server()
    ours = OIDCMiddleware(
        bare_asgi, config(), http=httpx.AsyncClient(transport=httpx.MockTransport(idp))
    )
    _, core = ours.shell.core()
    body, etag = core.ring.jwks_bytes, core.ring.etag
    constant = _constant_endpoint(body, etag.encode())
    floor = _least_middleware(bare_asgi, constant)
    revalidate = [(b"if-none-match", etag.encode())]
    rows = []
    for name, headers in (("/k_jwks", None), ("/k_jwks 304 path", revalidate)):
        bare = asgi_caller(constant, "/k_jwks", headers=headers)
        expected = 304 if headers else 200
        for subject, against in ((ours, "middleware"), (floor, "least middleware")):
            call = asgi_caller(subject, "/k_jwks", headers=headers)
            assert call() == expected == bare()
            served, baseline = alternated(call, bare, calls)
            rows.append(
                Row(
                    f"{name}: {against} vs bare constant endpoint (throughput)",
                    1 / served,
                    1 / baseline,
                    JWKS_TARGET if subject is ours else None,
                    higher_is_better=True,
                    unit="req/s",
                )
            )
    return rows


def _constant_endpoint(body: bytes, tag: bytes) -> Callable[..., Any]:
    full = [
        (b"content-type", b"application/json"),
        (b"etag", tag),
        (b"cache-control", b"public, max-age=60"),
        (b"content-length", str(len(body)).encode()),
    ]
    short = [(b"etag", tag), (b"cache-control", b"public, max-age=60")]

    async def constant(scope: Any, receive: Any, send: Any) -> None:
        """The least an endpoint serving constant bytes with an ETag must do."""
        for name, value in scope["headers"]:
            if name == b"if-none-match" and value == tag:
                await send({"type": "http.response.start", "status": 304, "headers": short})
                await send({"type": "http.response.body", "body": b""})
                return
        await send({"type": "http.response.start", "status": 200, "headers": full})
        await send({"type": "http.response.body", "body": body})

    return constant


def _least_middleware(app: Any, endpoint: Any) -> Callable[..., Any]:
    """A middleware that only serves ``endpoint`` at ``/k_jwks`` for GET and HEAD, written
    for speed: no configuration, no reload, no other route (the floor of any middleware)."""

    async def least(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/k_jwks" and not scope["root_path"]:
            method = scope["method"]
            if method == "GET" or method == "HEAD":
                await endpoint(scope, receive, send)
                return
        await app(scope, receive, send)

    return least


# --- WSGI ----------------------------------------------------------------------------------------


def wsgi_environ(
    cookie: str | None = None, path: str = "/", headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A GET's environ as a WSGI server builds it (a fresh, empty ``wsgi.input``)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "app",
        "SERVER_PORT": "80",
        "HTTP_HOST": "app.example.com",
        "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.errors": io.StringIO(),
        "wsgi.input": io.BytesIO(b""),
    }
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    environ.update(headers or {})
    return environ


def wsgi_caller(
    app: Any, cookie: str | None = None, path: str = "/", headers: dict[str, str] | None = None
) -> Callable[[], object]:
    base = wsgi_environ(cookie, path, headers)
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], *exc: Any) -> None:
        status.append(code)

    def call() -> object:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        if cookie:
            # A server reads a fresh header string for every request (as ASGI's bytes are
            # decoded afresh): reusing one object would let its cached hash flatter whoever
            # hashes the header.
            environ["HTTP_COOKIE"] = cookie[:-1] + cookie[-1]
        body = app(environ, start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()
        return status.pop()

    return call


def wsgi_rows(number: int, rounds: int) -> list[Row]:
    from flask import Flask, session

    idp, token = server()
    flask_app = Flask(__name__)
    flask_app.secret_key = SECRET

    @flask_app.get("/")
    def home() -> str:
        return "ok"

    @flask_app.get("/with-session")
    def with_session() -> str:
        return str(session.get("user"))

    ours = OIDCWSGIMiddleware(
        flask_app.wsgi_app, config(), http=httpx.Client(transport=httpx.MockTransport(idp))
    )
    cookie = session_cookie(ours)
    call_ours = wsgi_caller(ours, cookie)
    assert call_ours().startswith("200")
    bare = wsgi_caller(flask_app.wsgi_app)
    # Flask parses every Cookie header it gets (its session interface looks for its own
    # cookie): that cost is the app's whatever the middleware does, so our baseline is the
    # bare app receiving the same header.
    bare_with_cookie = wsgi_caller(flask_app.wsgi_app, cookie)
    ours_times, bare_times = timed([call_ours, bare_with_cookie], number, rounds)
    with flask_app.test_request_context():
        from flask.sessions import SecureCookieSessionInterface

        serializer = SecureCookieSessionInterface().get_signing_serializer(flask_app)
        assert serializer is not None
        flask_cookie = f"session={serializer.dumps({'user': 'alice', 'roles': ['user']})}"

    flask_session_path = wsgi_caller(flask_app.wsgi_app, flask_cookie, "/with-session")
    theirs_times, bare_again = timed([flask_session_path, bare], number, rounds)
    ours_added, theirs_added = added(ours_times, bare_times), added(theirs_times, bare_again)
    rows = [
        Row(
            "WSGI Flask app: added per request vs Flask's session",
            ours_added.value,
            theirs_added.value,
            1 / 3,
            noise=ours_added.noise,
            baseline_noise=theirs_added.noise,
        ),
        Row("WSGI Flask app: with middleware vs bare", median(ours_times), median(bare_times)),
    ]
    rows += anonymous_wsgi_rows(idp, number, rounds)
    rows += bearer_wsgi_rows(idp, token, flask_session_path, bare, number, rounds)
    return rows


def sessionless_flask() -> Any:
    """A Flask app whose session interface does nothing: the baseline that shows what Flask's
    own session costs a request that carries no cookie (it opens one on every request)."""
    from flask import Flask
    from flask.sessions import SessionInterface

    class NoSessions(SessionInterface):
        def open_session(self, app: Any, request: Any) -> Any:
            return None

        def make_null_session(self, app: Any) -> Any:
            return None

        def save_session(self, app: Any, session: Any, response: Any) -> None:
            return None

    app = Flask("bench_sessionless")
    app.session_interface = NoSessions()

    @app.route("/", methods=["GET"])
    @app.route("/private", methods=["GET"])
    def page() -> str:
        return "ok"

    return app


def anonymous_wsgi_rows(idp: Any, number: int, rounds: int) -> list[Row]:
    """Requests with no cookie through the WSGI shell, against what Flask's session costs the
    same request (its default interface against one that does nothing)."""
    from flask import Flask

    plain = sessionless_flask()
    with_sessions = Flask("bench_sessions")
    with_sessions.secret_key = SECRET
    with_sessions.add_url_rule("/", "page", lambda: "ok")
    ours = OIDCWSGIMiddleware(
        plain.wsgi_app,
        config(**{"public-paths": ["/"]}),
        http=httpx.Client(transport=httpx.MockTransport(idp)),
    )
    public = wsgi_caller(ours, path="/")
    api = wsgi_caller(ours, path="/private", headers={"HTTP_ACCEPT": "application/json"})
    page = wsgi_caller(ours, path="/private", headers={"HTTP_ACCEPT": "text/html"})
    statuses = (public()[:3], api()[:3], page()[:3])
    assert statuses == ("200", "401", "302"), statuses
    theirs = wsgi_caller(with_sessions.wsgi_app, path="/")
    bare = wsgi_caller(plain.wsgi_app, path="/")
    # A refusal never reaches Flask: its cost is measured against the least a WSGI app does.
    least = wsgi_caller(bare_wsgi, path="/private")
    times = timed([public, api, page, theirs, bare, least], number, rounds)
    public_t, api_t, page_t, theirs_t, bare_t, least_t = times
    vs = "added vs Flask's session (no cookie)"
    flask_session = added(theirs_t, bare_t)

    def refusal(name: str, subject: list[float]) -> Row:
        ours = added(subject, least_t)
        return Row(
            name, ours.value, flask_session.value, 1.0, noise=ours.noise,
            baseline_noise=flask_session.noise,
        )  # fmt: skip

    return [
        added_row(f"WSGI anonymous, public page: {vs}", public_t, theirs_t, bare_t, 0.5),
        refusal(f"WSGI anonymous, protected -> 401: {vs}", api_t),
        refusal(f"WSGI anonymous, protected -> 302: {vs}", page_t),
    ]


def bare_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def bearer_wsgi_rows(
    idp: Any,
    token: Callable[[int], str],
    flask_session: Callable[[], object],
    flask_bare: Callable[[], object],
    number: int,
    rounds: int,
) -> list[Row]:
    """A bearer token seen before through the WSGI shell, against Flask's session read."""
    plain = sessionless_flask()
    ours = OIDCWSGIMiddleware(
        plain.wsgi_app,
        config(**{"bearer-only": True}),
        http=httpx.Client(transport=httpx.MockTransport(idp)),
    )
    seen = wsgi_caller(ours, headers={"HTTP_AUTHORIZATION": f"Bearer {token(0)}"})
    assert seen().startswith("200")
    bare = wsgi_caller(plain.wsgi_app)
    seen_t, bare_t, theirs_t, theirs_bare_t = timed(
        [seen, bare, flask_session, flask_bare], number, rounds
    )
    ours_added, theirs_added = added(seen_t, bare_t), added(theirs_t, theirs_bare_t)
    return [
        Row(
            "WSGI bearer, token seen before: added vs Flask's session",
            ours_added.value, theirs_added.value, 1 / 3,
            noise=ours_added.noise, baseline_noise=theirs_added.noise,
        )
    ]  # fmt: skip
