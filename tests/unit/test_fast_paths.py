"""Requests without credentials are decided before any request object is built (issue 15);
these tests hold that shortcut to exactly what the full path decides for the same request, in
both shells, so a fast path can skip work but never a check."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter import OIDCMiddleware, OIDCWSGIMiddleware, load_config
from adapter.web.core import Proceed, Respond, WebCore, drive

ISSUER = "https://sso.example.com/realms/fast"
PATHS = [
    "/", "/public", "/public/", "/public/page", "/publicity", "/private", "/private/x",
    "/oidc/login", "/oidc/callback", "/oidc/logout", "/k_jwks", "/caf\u00e9", "/a%2Fb",
    "/" + "x" * 3000,
]  # fmt: skip
METHODS = ["GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE"]
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
    app_path = path
    fast = middleware._fast(core, scope, app_path, root)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    request = asyncio.run(middleware._request(core, scope, receive))
    full = full_path(core, request)
    if fast is None:
        # Left to the full path: the adapter's own routes, preflights, bearer-only mode.
        assert path in ("/oidc/login", "/oidc/callback", "/oidc/logout", "/k_jwks") or (
            method == "OPTIONS" or bearer_only
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
    full = full_path(core, middleware._request(core, dict(environ)))
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
        assert answered[0][1] == full.headers
        assert b"".join(body) == full.body
    else:
        assert reached
        assert reached[0]["oidc.identity"] is None
        assert not full.preflight or method == "OPTIONS"
