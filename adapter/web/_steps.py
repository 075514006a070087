"""What the shells hand the core and get back, and the I/O the core asks them to perform.

The core (:mod:`adapter.web.core`) is a generator: it takes a :class:`WebRequest`, yields
:data:`Step` objects (server metadata, keys, a flow, a refresh, an introspection) and returns an
:data:`Outcome`. :func:`drive` and :func:`drive_async` run it with a shell's own I/O, as httpx
drives one ``auth_flow`` from both sides; the types here are small and frozen, like h11's events.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, cast, runtime_checkable

import httpx

from adapter.errors import AdapterError
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.flows import Flow
from adapter.protocol.permissions import Granted
from adapter.protocol.token_exchange import subject_token
from adapter.protocol.tokens import NeedKeys as NeedKeys  # re-exported: a web step too
from adapter.protocol.tokens import TokenSet
from adapter.stores import SessionOwner

# --- what the shells hand in and get back ----------------------------------------------------


@dataclass(frozen=True)
class WebRequest:
    """The parts of an HTTP request the adapter looks at (header names lower case).

    ``path`` and ``raw_path`` are relative to the app's root: the shells take ``root_path`` (ASGI)
    or ``SCRIPT_NAME`` (WSGI) off, and everything the adapter sends back (redirects, cookie
    paths) puts it in front again."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    scheme: str = "http"
    host: str = "localhost"
    form: Mapping[str, str] = field(default_factory=dict)  # only for the logout POST
    raw_path: str | None = None  # the path as sent (percent-encoded), when the server gives it
    websocket: bool = False  # a websocket handshake (scheme http/https as for the page)
    root_path: str = ""  # where the app is mounted ("/myapp"); ``path`` is relative to it
    peer: str | None = None  # the address the connection came from (a TLS terminator's)
    # The body, only where the policy enforcer's claims read it ({request.body[...]}).
    body: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Methods compare without regard to case: a server passes ``delete`` on as sent, and
        # frameworks (Django) run their DELETE handler for it, so every rule must see DELETE.
        if not self.method.isupper():
            object.__setattr__(self, "method", self.method.upper())


@dataclass(init=False, frozen=True)
class Respond:
    """Answer the request without calling the app.

    Immutable, headers included (a tuple, whatever sequence was passed): answers built once
    are shared between requests, so a shell hands the server a list of its own."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes = b"") -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "headers", tuple(headers))
        object.__setattr__(self, "body", body)

    @cached_property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers as the wire (and ASGI) wants them, encoded once per response object."""
        return tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers)


@dataclass(frozen=True)
class Proceed:
    """Call the app; add ``set_cookies`` to its response, and with ``private`` mark it for
    the browser's cache only (``Cache-Control: private``, plus ``Vary: Cookie`` with
    ``vary_cookie``) unless the app chose its own ``Cache-Control``."""

    identity: Identity | None
    set_cookies: list[str] = field(default_factory=list)
    preflight: bool = False  # a CORS preflight: keep only the app's CORS headers, no body
    private: bool = False  # answered for an identity: no shared cache may keep it
    vary_cookie: bool = False  # the identity came from a cookie


Outcome = Respond | Proceed


@runtime_checkable
class TokenExchanger(Protocol):
    """What :class:`Identity` needs of the middleware's client (``OIDCClient`` or
    ``AsyncOIDCClient``: the second's ``exchange_token`` is a coroutine function)."""

    def exchange_token(
        self,
        subject_token: str,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
    ) -> Any: ...

    def exchange_auth(
        self,
        subject: Any,
        audience: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        allowed_origins: Iterable[str] | None = None,
    ) -> httpx.Auth: ...


@runtime_checkable
class Authorizer(Protocol):
    """What :class:`Identity` needs to ask the policy enforcer in code: the middleware's
    (the WSGI shell's answers a bool, the ASGI shell's an awaitable of one)."""

    def has_permission(self, identity: Identity, permission: str) -> bool | Awaitable[bool]: ...


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        close()  # a coroutine never awaited: no "was never awaited" warning


@dataclass(frozen=True)
class Identity:
    """The signed-in user (or bearer token's subject), as the app sees it.

    Shaped like Starlette's ``BaseUser`` (``is_authenticated``, ``display_name``,
    ``identity``), so ``request.user`` works there; WSGI apps read it from the environ.
    """

    claims: Mapping[str, Any]
    display_name: str
    roles: frozenset[str]
    client_roles: frozenset[str]
    scopes: frozenset[str]
    access_token: str | None = None
    id_token: str | None = field(default=None, repr=False)
    csrf_token: str | None = field(default=None, repr=False)
    tenant: str | None = None  # the tenant's name, in an app with several (docs/tenants.md)
    # The key the session's tokens are bound to (dpop-tokens): downstream calls prove it,
    # DPoPProofs(identity.dpop_key, access_token=identity.access_token) (docs/fapi.md).
    dpop_key: DPoPKey | None = field(default=None, repr=False, compare=False)
    # The middleware's client (its tenant's), for exchange/exchange_auth; None when the
    # identity was made elsewhere (tests' own, say).
    exchanger: TokenExchanger | None = field(default=None, repr=False, compare=False)
    # What the policy enforcer knows the server granted for this request (an RPT's
    # permissions, or the UMA grant's with enforcer-grant = "permissions"): docs/authorization.md.
    permissions: tuple[Granted, ...] = ()
    # The middleware's policy enforcer, for has_permission; None without one.
    authorizer: Authorizer | None = field(default=None, repr=False, compare=False)

    @property
    def is_authenticated(self) -> bool:
        return True

    def exchange(
        self, audience: str, scope: str | None = None, resource: str | None = None
    ) -> TokenSet:
        """This identity's access token exchanged for a token for ``audience`` (RFC 8693,
        Keycloak's standard token exchange; docs/token-exchange.md), kept until shortly
        before it expires. WSGI apps; an ASGI app awaits :meth:`exchange_async`."""
        client = self._exchanger()
        result = client.exchange_token(subject_token(self), audience, scope, resource)
        if inspect.isawaitable(result):
            _close(result)
            raise RuntimeError(
                "identity.exchange is for WSGI apps; in an ASGI app use "
                "await identity.exchange_async(...)"
            )
        return cast(TokenSet, result)

    async def exchange_async(
        self, audience: str, scope: str | None = None, resource: str | None = None
    ) -> TokenSet:
        """:meth:`exchange` for ASGI apps (a WSGI app's client runs it in a thread)."""
        client = self._exchanger()
        subject = subject_token(self)
        if inspect.iscoroutinefunction(client.exchange_token):
            return cast(TokenSet, await client.exchange_token(subject, audience, scope, resource))
        import asyncio  # loaded by the running loop already; a WSGI app never imports it

        exchanged = await asyncio.to_thread(
            client.exchange_token, subject, audience, scope, resource
        )
        return cast(TokenSet, exchanged)

    def exchange_auth(
        self,
        audience: str,
        scope: str | None = None,
        resource: str | None = None,
        allowed_origins: Iterable[str] | None = None,
    ) -> httpx.Auth:
        """An ``httpx.Auth`` sending this identity's token exchanged for ``audience`` (for
        ``httpx.AsyncClient`` in an ASGI app, ``httpx.Client`` in a WSGI app)."""
        return self._exchanger().exchange_auth(self, audience, scope, resource, allowed_origins)

    def has_permission(self, permission: str) -> bool:
        """Whether the identity server grants ``permission`` (``"Bank Account#view"``:
        a resource by name or id, ``#`` and its scopes, ALL of them) to this identity, as the
        policy enforcer asks it (the token's RPT permissions, else the UMA grant; remembered
        with the enforcer's grants). WSGI apps; an ASGI app awaits
        :meth:`has_permission_async`. The server unreachable: :class:`~adapter.errors.
        ProviderError` (never a yes)."""
        result = self._authorizer().has_permission(self, permission)
        if inspect.isawaitable(result):
            _close(result)
            raise RuntimeError(
                "identity.has_permission is for WSGI apps; in an ASGI app use "
                "await identity.has_permission_async(...)"
            )
        return bool(result)

    async def has_permission_async(self, permission: str) -> bool:
        """:meth:`has_permission` for ASGI apps."""
        result = self._authorizer().has_permission(self, permission)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    def _authorizer(self) -> Authorizer:
        if self.authorizer is None:
            raise RuntimeError(
                "this identity has no policy enforcer to ask: configure policy-enforcer "
                "(docs/authorization.md) and use the identity the middleware made"
            )
        return self.authorizer

    def _exchanger(self) -> TokenExchanger:
        if self.exchanger is None:
            raise RuntimeError(
                "this identity has no client to exchange its token with: use the one the "
                "middleware made (request.user, current_identity), or client.exchange_token"
            )
        return self.exchanger

    @property
    def identity(self) -> str:
        return str(self.claims.get("sub", ""))

    @cached_property
    def sorted_scopes(self) -> tuple[str, ...]:
        """The scopes in order, once per identity (Starlette's ``AuthCredentials`` wants a
        list on every request)."""
        return tuple(sorted(self.scopes))

    def __repr__(self) -> str:
        return f"Identity(sub={self.identity!r}, roles={sorted(self.roles)!r})"


# --- I/O the core asks the shell to perform --------------------------------------------------


@dataclass(frozen=True)
class NeedMetadata:
    """Yield to get the server's :class:`ProviderMetadata`."""


# NeedKeys: the protocol layer's own step (its token checks yield it), used here as it is.


@dataclass(frozen=True)
class NeedFlow:
    """Yield to run a protocol flow with client authentication; get its result.

    ``timeout`` bounds the whole exchange tighter than the configured timeouts (best-effort
    calls such as the revocation at logout)."""

    flow: Flow[Any]
    timeout: float | None = None


@dataclass(frozen=True)
class NeedRefresh:
    """Yield to run a session's refresh ``flow``, one refresh per ``key`` in flight.

    The shell remembers the outcome briefly (a failure too, as a back-off). With ``wait`` false
    (the access token is still valid) it answers ``None`` at once when another request of the
    session is refreshing: this one goes on with the tokens it has."""

    key: str
    flow: Flow[TokenSet]
    wait: bool = True


@dataclass(frozen=True)
class NeedIntrospection:
    """Yield to introspect a token; concurrent requests with the same ``key`` share one call."""

    key: str
    flow: Flow[dict[str, Any]]


StoreOp = Literal["load", "save", "replace", "delete"]
SharedOp = Literal["end", "logout", "changed", "check", "proof"]


@dataclass(frozen=True)
class NeedStore:
    """Yield to run one operation on the server-side session store (memory or Redis):
    ``load`` (the data or ``None``), ``save``, ``replace`` (``False`` when the session is gone)
    or ``delete``. ``ttl``: seconds the session may still live; ``owner`` (on the first
    ``save``): whom it belongs to at the identity server (a back-channel logout deletes it)."""

    op: StoreOp
    sid: str
    data: dict[str, Any] | None = None
    ttl: float = 0.0
    owner: SessionOwner | None = None


@dataclass(frozen=True)
class NeedShared:
    """Yield to tell the other processes (or ask them, through Redis) about sessions:

    - ``end``: session ``sid`` (created ``at``) ended here, until ``until`` (with ``purge``,
      its data in the Redis store is deleted in the same transaction); when Redis refuses, the
      end is written again later and the step fails (:class:`~adapter.errors.StoreError`);
    - ``logout``: the identity server logged out ``idp_sid`` and/or ``sub``; answers ``False``
      when the logout token's ``jti`` was seen before, by any process;
    - ``changed``: session ``sid`` changed (a refresh): forget what you remembered of it;
    - ``check``: a session this process has not seen: answers :class:`SharedRecords`;
    - ``proof``: a DPoP proof's ``jti`` used: answers ``False`` when any process used it.

    ``app`` scopes the identity server's names (and every event) to this app's issuer and
    client (:func:`adapter.web._session_cookies.app_scope`).
    """

    op: SharedOp
    sid: str | None = None
    at: float = 0.0
    until: float = 0.0
    idp_sid: str | None = None
    sub: str | None = None
    jti: str | None = None
    jti_until: float = 0.0  # how long the jti must be remembered (a logout's replay window)
    app: str = ""
    purge: bool = False
    front: bool = False  # a logout: unauthenticated (front-channel), kept apart (ServerLogouts)


@dataclass(frozen=True)
class SharedRecords:
    """What the other processes recorded about one session (the answer to ``check``)."""

    ended: bool = False
    logged_out_by_sid: bool = False  # the identity server's session was logged out
    user_logged_out_at: float | None = None  # when the user was logged out (all her sessions)


Step = NeedMetadata | NeedKeys | NeedFlow | NeedRefresh | NeedIntrospection | NeedStore | NeedShared
Handling = Generator[Step, Any, Outcome]


# --- drivers ----------------------------------------------------------------------------------


def drive(handling: Handling, perform: Callable[[Step], Any]) -> Outcome:
    """Run ``handling`` to its outcome with a synchronous ``perform`` for each step.

    Failures of a step are thrown back into the handling generator, so the core decides what
    they mean (a refused refresh ends a session, a refused code is a 400 ...).
    """
    try:
        step = next(handling)
        while True:
            try:
                result = perform(step)
            except AdapterError as error:
                step = handling.throw(error)
            else:
                step = handling.send(result)
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


async def drive_async(handling: Handling, perform: Callable[[Step], Awaitable[Any]]) -> Outcome:
    """:func:`drive` for asynchronous shells."""
    try:
        step = next(handling)
        while True:
            try:
                result = await perform(step)
            except AdapterError as error:
                step = handling.throw(error)
            else:
                step = handling.send(result)
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


def current_identity(source: Any) -> Identity | None:
    """The signed-in identity from a WSGI environ, an ASGI scope or a Starlette request."""
    scope = getattr(source, "scope", None) or getattr(source, "environ", None)
    scope = scope or getattr(source, "META", None) or source  # Starlette, Flask, Django
    if isinstance(scope, Mapping):
        identity = scope.get("oidc.identity")
        return identity if isinstance(identity, Identity) else None
    return None
