"""OIDCMiddleware: the ASGI shell (Starlette, FastAPI, any ASGI app).

It turns the ASGI scope into a :class:`~adapter.web.core.WebRequest`, drives the core's steps with
an ``httpx.AsyncClient``, and either sends the core's response or calls the app with
``scope["user"]`` / ``scope["auth"]`` set. No protocol decision is made here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx

from adapter._shell import AsyncSteps, perform, refuse_second_middleware
from adapter._tenancy import Tenancy
from adapter.config import AdapterConfig
from adapter.keys.keyring import KeyRing
from adapter.protocol.client import AsyncOIDCClient
from adapter.reload import ReloadStatus
from adapter.state import AdapterState
from adapter.web._steps import Outcome, Proceed, Respond, WebRequest
from adapter.web.entry import (
    MAX_BODY_BYTES,
    MAX_FORM_BYTES,
    UNREAD,
    Credentials,
    Front,
    Unread,
    body_too_large,
    drive_async,
    failure_response,
    parse_cookie_header,
    parse_form,
    preflight_header,
    private_raw_headers,
    split_root,
)

# Starlette is an extra (``asgi``; ``fastapi`` brings it too): a WSGI app never imports this module.
_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[asgi]' (or [fastapi])"
try:
    from starlette.authentication import AuthCredentials, UnauthenticatedUser
except ImportError:
    raise ImportError(
        f"OIDCMiddleware (adapter.asgi) needs Starlette; {_EXTRA_HINT}", name="starlette"
    ) from None

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class OIDCMiddleware:
    """Put in front of an ASGI app: login, sessions, logout, bearer checks and ``/k_jwks``."""

    def __init__(
        self,
        app: ASGIApp,
        config: AdapterConfig | str | Path,
        *,
        key_ring: KeyRing | None = None,
        http: httpx.AsyncClient | None = None,
        watch: float | None = None,
        sighup: bool = False,
        tenant_resolver: Callable[[Scope], str | None] | None = None,
    ) -> None:
        """``watch`` polls the configuration's files every so many seconds (a lifespan task);
        ``sighup`` reloads on SIGHUP. ``reload()`` reloads now; ``status`` tells how it went.
        A configuration with ``[[tenants]]`` serves each tenant apart (docs/tenants.md);
        ``tenant_resolver`` names a request's tenant from its scope (``None``: the file's
        rules decide)."""
        refuse_second_middleware(app)  # a second one makes every sign-in loop
        self.app = app
        self.tenancy: Tenancy[AsyncSteps, Scope] = Tenancy.build(
            config,
            lambda config, ring: AsyncOIDCClient(config, key_ring=ring, http=http),
            AsyncSteps,  # the core's steps, done async
            key_ring=key_ring,
            watch=watch,
            sighup=sighup,
            resolver=tenant_resolver,
        )
        first = self.tenancy.sites[0]  # the app's one site, or its first tenant's
        self.shell, self.client = first.shell, first.steps.client
        self._single = self.tenancy.single  # a plain configuration: no choice to make
        self._watchers: list[asyncio.Task[None]] = []

    def reload(self) -> bool:
        """Reload the configuration now (every tenant's); ``False`` when one is broken (it
        keeps its old state; the others take their new one)."""
        return self.tenancy.reload()

    @property
    def status(self) -> ReloadStatus | None:
        """Load times, the last reload error and the key states (the first tenant's, with
        several: ``tenancy.statuses`` has each one's)."""
        return self.shell.status

    def client_for(self, tenant: str | None) -> AsyncOIDCClient:
        """Tenant ``tenant``'s client (its service-account tokens, its token calls), as
        ``client`` is a plain app's; ``None``: ``client``. An unknown name: ``ConfigError``."""
        return self.tenancy.site(tenant).steps.client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                receive = self._lifespan(receive)  # the file watcher lives as long as the app
            await self.app(scope, receive, send)
            return
        path, root_path = app_path(scope) if scope.get("root_path") else (scope["path"], "")
        site = self._single
        read: Credentials | Unread = UNREAD  # what choosing a tenant read, if anything
        if site is None:  # several tenants: the request's, and its path as that tenant's
            site, path, root_path, read = self.tenancy.choose(WIRE, scope, path, root_path)
        method = scope.get("method", "GET").upper()  # "delete" is DELETE, as the core reads it
        if site is None:  # no tenant's: decided without a state
            outcome: Outcome = self.tenancy.unclaimed(WIRE, scope, path, method)
        else:
            state, front = site.shell.front()  # one snapshot for the whole request
            shortcut = None
            if kind == "http":
                https = scope.get("scheme") == "https"
                shortcut = front.shortcut(WIRE, scope, method, path, root_path, https, read)
            if shortcut is None:  # ``receive`` replays a body the enforcer's claims read
                shortcut, receive = await self._full_path(
                    site.steps, state, front, scope, receive, path, root_path
                )
            outcome = shortcut
        if isinstance(outcome, Respond):  # sent here, not in a coroutine: /k_jwks is hot
            if kind == "websocket":
                await _refuse(receive, send)
                return
            # Answers are immutable (and shared): the server gets a header list of its own.
            headers = list(outcome.raw_headers)
            await send(
                {"type": "http.response.start", "status": outcome.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": outcome.body})
            return
        scope = _with_identity(scope, outcome)
        if kind == "http":
            send = _cors_only(send) if outcome.preflight else _adding(send, outcome)
        await self.app(scope, receive, send)

    async def _full_path(
        self,
        steps: AsyncSteps,
        state: AdapterState,
        front: Front,
        scope: Scope,
        receive: Receive,
        path: str,
        root_path: str,
    ) -> tuple[Outcome, Receive]:
        """The core decides with a request object, its steps done by ``steps``; the
        ``receive`` the app is to use (the body's messages replayed when they were read)."""
        body: bytes | None = None
        try:
            if scope["type"] == "http" and front.wants_body(path):
                body, receive = await _buffered(scope, receive)
            request = await self._request(front, scope, receive, path, root_path, body)
            outcome = await drive_async(
                front.handle(request), lambda step: perform(step, state, steps)
            )
        except Exception as error:  # never a traceback or a 500 from the adapter itself
            outcome = failure_response(error)
        return outcome, receive

    def _lifespan(self, receive: Receive) -> Receive:
        """Start the file watcher with the app, stop it with the app."""

        async def watching_receive() -> Message:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                self._watchers = [  # each tenant watches its own files
                    asyncio.create_task(reloader.watch(every))
                    for reloader, every in self.tenancy.reloaders()
                    if every
                ]
            elif kind == "lifespan.shutdown":
                for watcher in self._watchers:
                    watcher.cancel()
            return message

        return watching_receive

    async def _request(
        self,
        front: Front,
        scope: Scope,
        receive: Receive,
        path: str | None = None,
        root_path: str = "",
        body: bytes | None = None,
    ) -> WebRequest:
        """The request as the core reads it; ``path`` and ``root_path`` as its tenant sees
        them (:meth:`Tenancy.choose`; by default, as the scope says); ``body`` as
        :func:`_buffered` read it, for the policy enforcer's claims."""
        if path is None:
            path, root_path = app_path(scope)
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            joined = _JOINED.get(key) if key in headers else None  # sent twice: kept both
            headers[key] = f"{headers[key]}{joined}{text}" if joined else text
        method = str(scope.get("method", "GET")).upper()  # a websocket handshake is a GET
        form: dict[str, str] = {}
        if front.wants_form(method, path):
            form = parse_form(await _read_body(receive, MAX_FORM_BYTES))
        server = scope.get("server") or ("localhost", None)
        host = headers.get("host") or (f"{server[0]}:{server[1]}" if server[1] else server[0])
        websocket = scope["type"] == "websocket"
        scheme = str(scope.get("scheme") or ("ws" if websocket else "http"))
        request = WebRequest(
            method=method,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            cookies=parse_cookie_header(headers.get("cookie", "")),
            scheme=_PAGE_SCHEMES.get(scheme, scheme),
            host=host,
            form=form,
            raw_path=_raw_path(scope, root_path),
            websocket=websocket,
            root_path=root_path,
            peer=_peer(scope),
            body=body,
        )
        return request

    async def aclose(self) -> None:
        """Close the HTTP connections to the identity server; stop hearing session events."""
        for site in self.tenancy:
            site.shell.close()
            await site.steps.client.aclose()


_PAGE_SCHEMES = {"ws": "http", "wss": "https"}  # a websocket's origin is its page's
# Headers whose repeats are joined, not replaced: cookies (as one header), DPoP proofs (two
# are refused: the joined value is no proof, RFC 9449 §4.3).
_JOINED = {"cookie": "; ", "dpop": ", "}


def app_path(scope: Scope) -> tuple[str, str]:
    """The request's path relative to the app, and the app's root path
    (:func:`~adapter.web.entry.split_root`)."""
    return split_root(scope.get("path") or "/", str(scope.get("root_path") or ""))


def _raw_path(scope: Scope, root_path: str) -> str | None:
    """The path as sent (percent-encoded), relative to the app like ``app_path``."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return None
    text = raw.decode("latin-1").split("?", 1)[0]
    quoted_root = quote(root_path, safe="/:@!$&'()*+,;=-._~")
    for prefix in (root_path, quoted_root):
        if prefix and (text == prefix or text.startswith(prefix + "/")):
            return text[len(prefix) :] or "/"
    if root_path and unquote(text).startswith(root_path):
        return None  # the root encoded otherwise (/%61cme for /acme): where it ends is unknown
    return text


def _peer(scope: Scope) -> str | None:
    """The address the connection came from (ASGI's ``client``), if the server gives it."""
    client = scope.get("client")
    return str(client[0]) if client else None


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > limit:
            return b""
        if not message.get("more_body", False):
            return body


async def _buffered(scope: Scope, receive: Receive) -> tuple[bytes | None, Receive]:
    """The body, read up to :data:`MAX_BODY_BYTES` (``None`` past it, or when the client
    left first), and a ``receive`` that gives the app the messages read, then the server's.
    A body announced larger is not read at all: the app streams it as it comes."""
    length = WIRE.header(scope, "content-length")
    if length is not None and body_too_large(length):
        return None, receive
    messages: list[Message] = []
    size, more = 0, True
    while more and size <= MAX_BODY_BYTES:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        more = message["type"] == "http.request" and bool(message.get("more_body", False))
    whole = size <= MAX_BODY_BYTES and messages[-1]["type"] == "http.request" and not more
    body = b"".join(bytes(m.get("body", b"")) for m in messages) if whole else None
    return body, _replaying(messages, receive)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives ``messages`` again, in order."""
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


class _AsgiWire:
    """How the entry (:class:`~adapter.web.entry.Wire`) reads an ASGI scope: header names
    compare in any case (servers send them lower case; the full path lowers them too); values
    are given as the server holds them."""

    __slots__ = ()

    def credentials(self, scope: Scope) -> tuple[bytes | None, str | None] | None:
        cookie = authorization = None
        for name, value in scope["headers"]:
            if name == b"cookie" or (len(name) == 6 and name.lower() == b"cookie"):
                if cookie is not None:
                    return None  # sent more than once
                cookie = value
            elif len(name) == 13 and name.lower() == b"authorization":  # any case, cheaply
                if authorization is not None:
                    return None
                authorization = value
        return cookie, (authorization.decode("latin-1") if authorization is not None else None)

    def header(self, scope: Scope, name: str) -> bytes | None:
        wanted = _NAMES.get(name) or name.encode("latin-1")
        found = None
        for key, value in scope["headers"]:
            if key == wanted or (len(key) == len(wanted) and key.lower() == wanted):
                found = value  # the last one, as the full path's request reads it
        return found

    def raw_path(self, scope: Scope, path: str, root_path: str) -> str:
        return _raw_path(scope, root_path) or quote(path, safe=RAW_PATH_SAFE)

    def query(self, scope: Scope) -> str:
        return bytes(scope.get("query_string", b"")).decode("latin-1")


WIRE = _AsgiWire()
_NAMES = {
    name: name.encode()
    for name in ("if-none-match", "accept", "sec-fetch-mode", "x-requested-with")
}
RAW_PATH_SAFE = "/:@!$&'()*+,;=-._~%"  # a path without raw_path: quote it, keeping escapes
_NOBODY = UnauthenticatedUser()  # holds nothing: one serves every anonymous request


async def _refuse(receive: Receive, send: Send) -> None:
    """A websocket is protected like a page: refused (1008) unless the core lets it in."""
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008})


def _with_identity(scope: Scope, outcome: Proceed) -> Scope:
    """The request's scope with the identity added, in place, as Starlette's own
    ``AuthenticationMiddleware`` sets ``user`` and ``auth`` (a copy cost more than the rest of
    a remembered request)."""
    identity = outcome.identity
    scope["oidc.identity"] = identity
    if identity is None:
        scope["user"] = _NOBODY
        scope["auth"] = AuthCredentials()
        return scope
    scope["user"] = identity
    scope["auth"] = AuthCredentials(identity.sorted_scopes)
    return scope


def _cors_only(send: Send) -> Send:
    """The app's answer to a CORS preflight with its CORS headers only, and no body."""

    async def send_cors_only(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            headers = message.get("headers", [])
            kept = [(k, v) for k, v in headers if preflight_header(k.decode("latin-1"))]
            message["headers"] = [*kept, (b"content-length", b"0")]
        elif message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_cors_only


def _adding(send: Send, outcome: Proceed) -> Send:
    """The app's ``send`` with the outcome's cookies and, for an identity, the core's
    private-cache headers (:func:`~adapter.web._http.private_raw_headers`) added."""
    if not outcome.set_cookies and not outcome.private:
        return send
    extra = [(b"set-cookie", c.encode("latin-1")) for c in outcome.set_cookies]
    private, vary_cookie = outcome.private, outcome.vary_cookie

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            if type(headers) is not list and type(headers) is not tuple:
                headers = list(headers)  # any iterable: read once
            added = private_raw_headers(headers, vary_cookie) if private else None
            message = {**message, "headers": [*headers, *(added or ()), *extra]}
        await send(message)

    return send_with_headers
