"""Token exchange (RFC 8693): a token for another audience, on behalf of the same user.

An API that calls the next API as its caller (or an app as its signed-in user) trades the
user's access token for one whose audience is the downstream service: Keycloak 26.2's
"standard token exchange" (V2) does this with ``grant_type=urn:ietf:params:oauth:grant-type:
token-exchange``, ``subject_token`` the user's access token, ``audience`` the downstream
client's id, the caller authenticated as for any token request (docs/token-exchange.md has
the Keycloak rules and console settings).

Three pieces, each usable alone:

- :func:`token_exchange`, the flow (a generator, as every call to the server is);
- :class:`ExchangedTokens`, the exchanged tokens kept per (subject token, audience, scope,
  resource) until shortly before they expire, bounded, with one exchange in flight per key:
  a page that calls the orders API ten times exchanges once;
- :class:`TokenExchangeAuth` / :class:`AsyncTokenExchangeAuth`, ``httpx.Auth`` classes that put
  the exchanged token on each downstream request (one retry with a new exchange after a 401).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from typing import Protocol

import httpx

from adapter.errors import ProviderError
from adapter.protocol._single_flight import SingleFlight
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.flows import Flow, token_request
from adapter.protocol.service_account import AllowedOrigins
from adapter.protocol.tokens import TokenSet

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"  # noqa: S105 - a URN

# Kept per key until this long before the exchanged token expires (at most half its life).
REFRESH_MARGIN = 30.0
MAX_KEPT = 4096  # exchanged tokens kept at most (a few KiB each): ~10 MiB at the bound


def token_exchange(
    token_endpoint: str,
    subject_token: str,
    *,
    audience: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    requested_token_type: str = ACCESS_TOKEN_TYPE,
    subject_token_type: str = ACCESS_TOKEN_TYPE,
    dpop: DPoPKey | None = None,
    certificate: str | None = None,
) -> Flow[TokenSet]:
    """Exchange ``subject_token`` for a token for ``audience`` (RFC 8693 §2.1), with client
    authentication; the server's refusal is a :class:`~adapter.errors.TokenError` carrying
    its ``error`` and text (Keycloak: ``access_denied`` "Client is not within the token
    audience", ``invalid_request`` "Audience not found", ...)."""
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": subject_token_type,
        "requested_token_type": requested_token_type,
    }
    if audience:
        form["audience"] = audience
    if scope:
        form["scope"] = scope
    if resource:
        form["resource"] = resource
    tokens = yield from token_request(token_endpoint, form, dpop, certificate)
    issued = tokens.raw.get("issued_token_type")
    if issued is not None and issued != requested_token_type:
        raise ProviderError(
            f"token exchange: asked for {requested_token_type}, the server issued {issued!r}"
        )
    return tokens


ExchangeKey = tuple[bytes, str | None, str | None, str | None, str | None]


def exchange_key(
    subject_token: str,
    audience: str | None,
    scope: str | None,
    resource: str | None,
    jkt: str | None = None,
) -> ExchangeKey:
    """What an exchanged token is kept under: the subject token's SHA-256 (the token itself is
    never kept as a key), the audience, scope and resource, and the thumbprint of the DPoP key
    it is bound to (a bound token is never handed to a caller sending bearer tokens). A
    session's refreshed access token is a new subject: its exchanges start afresh, as they
    must (the old one may be revoked)."""
    digest = hashlib.sha256(subject_token.encode()).digest()
    return digest, audience, scope, resource, jkt


class ExchangedTokens:
    """Exchanged tokens per :func:`exchange_key`, each until ``margin`` seconds (at most half
    its lifetime) before it expires; at most ``max_kept`` (least recently used dropped first).
    :meth:`get` runs one exchange per key at a time, the other callers wait for it. A token
    without ``expires_in`` is not kept (it would be sent until the server refuses it)."""

    def __init__(self, margin: float = REFRESH_MARGIN, max_kept: int = MAX_KEPT) -> None:
        self.margin = margin
        self.max_kept = max_kept
        self.exchanges = 0  # how many exchanges were made (observability, tests)
        self._kept: OrderedDict[ExchangeKey, tuple[float, TokenSet]] = OrderedDict()
        self._guard = threading.Lock()
        self._flights: SingleFlight[TokenSet] = SingleFlight()

    def kept(self, key: ExchangeKey) -> TokenSet | None:
        """The token kept for ``key`` while it is fresh enough to send."""
        with self._guard:
            entry = self._kept.get(key)
            if entry is None:
                return None
            if time.time() >= entry[0]:
                del self._kept[key]
                return None
            self._kept.move_to_end(key)
            return entry[1]

    def keep(self, key: ExchangeKey, tokens: TokenSet) -> TokenSet:
        with self._guard:
            self.exchanges += 1
        if tokens.expires_at is None:
            return tokens
        now = time.time()
        lifetime = max(tokens.expires_at - now, 0.0)
        until = tokens.expires_at - min(self.margin, lifetime / 2)
        if until > now:
            with self._guard:
                self._kept[key] = (until, tokens)
                self._kept.move_to_end(key)
                while len(self._kept) > self.max_kept:
                    self._kept.popitem(last=False)
        return tokens

    def drop(self, key: ExchangeKey, access_token: str) -> None:
        """Forget the token a downstream API refused (if it is still the one kept)."""
        with self._guard:
            entry = self._kept.get(key)
            if entry is not None and entry[1].access_token == access_token:
                del self._kept[key]

    def get(self, key: ExchangeKey, exchange: Callable[[], TokenSet]) -> TokenSet:
        """The kept token for ``key``, else ``exchange()`` once (other threads wait for it)."""
        tokens = self.kept(key)
        if tokens is not None:
            return tokens
        result = self._flights.run(key, lambda: self._kept_or(key, exchange))
        assert result is not None  # run waits: None only with wait=False
        return result

    async def get_async(
        self, key: ExchangeKey, exchange: Callable[[], Awaitable[TokenSet]]
    ) -> TokenSet:
        """:meth:`get` for coroutines (one exchange per key across the event loop's tasks)."""
        tokens = self.kept(key)
        if tokens is not None:
            return tokens

        async def exchanged() -> TokenSet:
            kept = self.kept(key)  # a flight that landed just before this one began
            return kept if kept is not None else self.keep(key, await exchange())

        result = await self._flights.run_async(key, exchanged)
        assert result is not None
        return result

    def _kept_or(self, key: ExchangeKey, exchange: Callable[[], TokenSet]) -> TokenSet:
        kept = self.kept(key)
        return kept if kept is not None else self.keep(key, exchange())

    def __len__(self) -> int:
        return len(self._kept)

    def __repr__(self) -> str:
        return f"ExchangedTokens(kept={len(self._kept)}, exchanges={self.exchanges})"


class HasAccessToken(Protocol):
    """An :class:`~adapter.Identity` (or anything with the user's current access token)."""

    @property
    def access_token(self) -> str | None: ...


Subject = str | HasAccessToken | Callable[[], str | None]


def subject_token(subject: Subject) -> str:
    """The access token to exchange: given, an identity's, or a callable's (read per request,
    so a refreshed session token is exchanged anew). ``ValueError`` when there is none."""
    if isinstance(subject, str):
        token: str | None = subject
    elif callable(subject):
        token = subject()
    else:
        token = subject.access_token
    if not token:
        raise ValueError("token exchange needs the user's access token; this identity has none")
    return token


class TokenExchangeAuth(httpx.Auth):
    """``Authorization: Bearer <exchanged token>`` on each request of an ``httpx.Client``:
    ``exchange(subject_token)`` gives the token (kept by the client's
    :class:`ExchangedTokens`); after a 401 the token is dropped and the request sent once
    more with a fresh exchange."""

    requires_request_body = True  # the body is replayed on the one retry after a 401

    def __init__(
        self,
        subject: Subject,
        exchange: Callable[[str], TokenSet],
        forget: Callable[[str, str], None],
        allowed_origins: Iterable[str] | None = None,
    ) -> None:
        self._subject = subject
        self._exchange = exchange
        self._forget = forget
        self._origins = AllowedOrigins(allowed_origins)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._origins.allows(request):
            yield request
            return
        user_token = subject_token(self._subject)
        token = self._exchange(user_token).access_token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self._forget(user_token, token)
            request.headers["Authorization"] = f"Bearer {self._exchange(user_token).access_token}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("TokenExchangeAuth is for httpx.Client; use AsyncOIDCClient's")
        yield request  # pragma: no cover - makes this an async generator

    def __repr__(self) -> str:
        return "TokenExchangeAuth()"


class AsyncTokenExchangeAuth(httpx.Auth):
    """:class:`TokenExchangeAuth` for ``httpx.AsyncClient``."""

    requires_request_body = True

    def __init__(
        self,
        subject: Subject,
        exchange: Callable[[str], Awaitable[TokenSet]],
        forget: Callable[[str, str], None],
        allowed_origins: Iterable[str] | None = None,
    ) -> None:
        self._subject = subject
        self._exchange = exchange
        self._forget = forget
        self._origins = AllowedOrigins(allowed_origins)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._origins.allows(request):
            yield request
            return
        user_token = subject_token(self._subject)
        token = (await self._exchange(user_token)).access_token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self._forget(user_token, token)
            fresh = (await self._exchange(user_token)).access_token
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AsyncTokenExchangeAuth is for httpx.AsyncClient; use OIDCClient's")
        yield request  # pragma: no cover

    def __repr__(self) -> str:
        return "AsyncTokenExchangeAuth()"
