"""Service-account tokens for downstream calls: an ``httpx.Auth`` with a shared cached token.

The app puts it on its own ``httpx.Client`` / ``httpx.AsyncClient``. The token comes from the
client_credentials grant and is reused until shortly before it expires (``refresh_margin``
seconds, at most half its lifetime); one caller fetches it while any number of others wait
for that same fetch, and a failed fetch is reported to the waiters instead of being retried by
each. A 401 from the downstream API drops the token and retries the request once with a new
one (at most one such forced refresh every 10 s). With ``allowed_origins`` the token is only
sent to those origins (``https://api.example.com``), never to another host the client calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable

import httpx

from adapter.errors import AdapterError
from adapter.protocol._locks import LoopLocks
from adapter.protocol.dpop import DPoPKey, make_proof
from adapter.protocol.dpop_auth import NONCES
from adapter.protocol.tokens import TokenSet

_FAILURE_BACKOFF = 2.0
_FORCED_REFRESH_INTERVAL = 10.0


class _CachedToken:
    """The current token, when it is too old to send, and the last failure."""

    def __init__(self, refresh_margin: float) -> None:
        self.refresh_margin = refresh_margin
        self.tokens: TokenSet | None = None
        self.fetched_at = 0.0
        self.fetches = 0  # how many token requests were made (observability, tests)
        self._failure: tuple[float, AdapterError] | None = None
        self._last_forced = -_FORCED_REFRESH_INTERVAL

    def usable(self) -> str | None:
        """The access token if it stays valid for the margin; raises a failure still fresh."""
        tokens = self.tokens
        if tokens is None or tokens.expires_at is None:
            if tokens is None and self._failure and time.monotonic() < self._failure[0]:
                raise self._failure[1]
            return tokens.access_token if tokens else None
        lifetime = tokens.expires_at - self.fetched_at
        margin = min(self.refresh_margin, lifetime / 2)
        if tokens.expires_at - time.time() <= margin:
            return None
        return tokens.access_token

    def drop(self, access_token: str) -> bool:
        """Forget a token the downstream API refused; ``False`` if that happened just now."""
        now = time.monotonic()
        if now - self._last_forced < _FORCED_REFRESH_INTERVAL:
            return False
        self._last_forced = now
        if self.tokens is not None and self.tokens.access_token == access_token:
            self.tokens = None
        return True

    def store(self, tokens: TokenSet) -> str:
        self.tokens, self.fetched_at, self._failure = tokens, time.time(), None
        self.fetches += 1
        return tokens.access_token

    def failed(self, error: AdapterError) -> AdapterError:
        self.fetches += 1
        self._failure = (time.monotonic() + _FAILURE_BACKOFF, error)
        return error


class AllowedOrigins:
    """Where a token may go (``None``: anywhere the client sends): ``scheme://host[:port]``."""

    def __init__(self, origins: Iterable[str] | None) -> None:
        self._origins = {o.rstrip("/").lower() for o in origins} if origins is not None else None

    def allows(self, request: httpx.Request) -> bool:
        if self._origins is None:
            return True
        url = request.url
        return f"{url.scheme}://{url.netloc.decode().lower()}" in self._origins


class _Authorizing:
    """How a token goes on a request: ``Bearer``, or with ``dpop`` (the key the tokens are
    bound to) ``DPoP`` and a fresh proof (its ``ath``, the server's last nonce)."""

    def __init__(self, dpop: DPoPKey | None) -> None:
        self.dpop = dpop

    def authorize(self, request: httpx.Request, token: str) -> None:
        if self.dpop is None:
            request.headers["Authorization"] = f"Bearer {token}"
            return
        nonce = NONCES.get(request.url)
        proof = make_proof(self.dpop, request.method, str(request.url), access_token=token,
                           nonce=nonce)  # fmt: skip
        request.headers["Authorization"] = f"DPoP {token}"
        request.headers["DPoP"] = proof

    def nonce_asked(self, request: httpx.Request, response: httpx.Response) -> bool:
        """A DPoP API's ``use_dpop_nonce``: its nonce kept, the request to be sent again."""
        if self.dpop is None or NONCES.keep(request.url, response) is None:
            return False
        return 'error="use_dpop_nonce"' in response.headers.get("www-authenticate", "")


class ServiceAccountAuth(httpx.Auth):
    """Bearer auth with the client's own token, for ``httpx.Client`` (thread-safe); with
    ``dpop``, the token is DPoP-bound and each request proves the key."""

    requires_request_body = True  # the body is replayed on the one retry after a 401

    def __init__(
        self,
        fetch: Callable[[], TokenSet],
        refresh_margin: float = 30,
        allowed_origins: Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> None:
        self._fetch = fetch
        self.cache = _CachedToken(refresh_margin)
        self._origins = AllowedOrigins(allowed_origins)
        self._lock = threading.Lock()
        self._authorizing = _Authorizing(dpop)

    def token(self) -> str:
        """A usable access token, fetched by one thread while the others wait."""
        current = self.cache.usable()
        if current is not None:
            return current
        with self._lock:
            current = self.cache.usable()
            if current is not None:
                return current
            try:
                tokens = self._fetch()
            except AdapterError as error:
                failure = self.cache.failed(error)
            else:
                return self.cache.store(tokens)
        raise failure

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._origins.allows(request):
            yield request
            return
        token = self.token()
        self._authorizing.authorize(request, token)
        response = yield request
        if response.status_code != 401:
            return
        if self._authorizing.nonce_asked(request, response):
            self._authorizing.authorize(request, token)  # the same token, a proof with the nonce
            yield request
        elif self.cache.drop(token):
            self._authorizing.authorize(request, self.token())
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("ServiceAccountAuth is for httpx.Client; use AsyncOIDCClient's")
        yield request  # pragma: no cover - makes this an async generator

    def __repr__(self) -> str:
        return f"ServiceAccountAuth(fetches={self.cache.fetches})"


class AsyncServiceAccountAuth(httpx.Auth):
    """Bearer auth with the client's own token, for ``httpx.AsyncClient``; ``dpop`` as for
    :class:`ServiceAccountAuth`."""

    requires_request_body = True

    def __init__(
        self,
        fetch: Callable[[], Awaitable[TokenSet]],
        refresh_margin: float = 30,
        allowed_origins: Iterable[str] | None = None,
        dpop: DPoPKey | None = None,
    ) -> None:
        self._fetch = fetch
        self.cache = _CachedToken(refresh_margin)
        self._origins = AllowedOrigins(allowed_origins)
        self._locks = LoopLocks()
        self._authorizing = _Authorizing(dpop)

    async def token(self) -> str:
        """A usable access token, fetched by one task while the others wait."""
        current = self.cache.usable()
        if current is not None:
            return current
        async with self._locks.get():
            current = self.cache.usable()
            if current is not None:
                return current
            try:
                tokens = await self._fetch()
            except AdapterError as error:
                failure = self.cache.failed(error)
            else:
                return self.cache.store(tokens)
        raise failure

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._origins.allows(request):
            yield request
            return
        token = await self.token()
        self._authorizing.authorize(request, token)
        response = yield request
        if response.status_code != 401:
            return
        if self._authorizing.nonce_asked(request, response):
            self._authorizing.authorize(request, token)
            yield request
        elif self.cache.drop(token):
            self._authorizing.authorize(request, await self.token())
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AsyncServiceAccountAuth is for httpx.AsyncClient; use OIDCClient's")
        yield request  # pragma: no cover

    def __repr__(self) -> str:
        return f"AsyncServiceAccountAuth(fetches={self.cache.fetches})"
