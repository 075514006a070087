"""Service-account tokens for downstream calls: an ``httpx.Auth`` with a shared cached token.

The app puts it on its own ``httpx.Client`` / ``httpx.AsyncClient``. The token comes from the
client_credentials grant, is reused until ``refresh_margin`` seconds before it expires, and is
fetched by one caller while any number of others wait for that same fetch. A 401 from the
downstream API drops the token and retries the request once with a new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx

from adapter._locks import LoopLocks
from adapter.tokens import TokenSet


class _CachedToken:
    """The current token and the rule for when it is too old to send."""

    def __init__(self, refresh_margin: float) -> None:
        self.refresh_margin = refresh_margin
        self.tokens: TokenSet | None = None
        self.fetches = 0  # how many token requests were made (observability, tests)

    def usable(self) -> str | None:
        """The access token if it will still be valid for ``refresh_margin`` seconds."""
        tokens = self.tokens
        if tokens is None:
            return None
        remaining = tokens.expires_in(time.time())
        if remaining is not None and remaining <= self.refresh_margin:
            return None
        return tokens.access_token

    def drop(self, access_token: str) -> None:
        """Forget ``access_token`` (refused downstream) unless a newer one replaced it."""
        if self.tokens is not None and self.tokens.access_token == access_token:
            self.tokens = None

    def store(self, tokens: TokenSet) -> str:
        self.tokens = tokens
        self.fetches += 1
        return tokens.access_token


class ServiceAccountAuth(httpx.Auth):
    """Bearer auth with the client's own token, for ``httpx.Client`` (thread-safe)."""

    requires_request_body = True  # the body is replayed on the one retry after a 401

    def __init__(self, fetch: Callable[[], TokenSet], refresh_margin: float = 30) -> None:
        self._fetch = fetch
        self.cache = _CachedToken(refresh_margin)
        self._lock = threading.Lock()

    def token(self) -> str:
        """A usable access token, fetched by one thread while the others wait."""
        current = self.cache.usable()
        if current is not None:
            return current
        with self._lock:
            current = self.cache.usable()
            if current is not None:
                return current
            return self.cache.store(self._fetch())

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.cache.drop(token)
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise RuntimeError("ServiceAccountAuth is for httpx.Client; use AsyncOIDCClient's")
        yield request  # pragma: no cover - makes this an async generator

    def __repr__(self) -> str:
        return f"ServiceAccountAuth(fetches={self.cache.fetches})"


class AsyncServiceAccountAuth(httpx.Auth):
    """Bearer auth with the client's own token, for ``httpx.AsyncClient``."""

    requires_request_body = True

    def __init__(
        self, fetch: Callable[[], Awaitable[TokenSet]], refresh_margin: float = 30
    ) -> None:
        self._fetch = fetch
        self.cache = _CachedToken(refresh_margin)
        self._locks = LoopLocks()

    async def token(self) -> str:
        """A usable access token, fetched by one task while the others wait."""
        current = self.cache.usable()
        if current is not None:
            return current
        async with self._locks.get():
            current = self.cache.usable()
            if current is not None:
                return current
            return self.cache.store(await self._fetch())

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.cache.drop(token)
            request.headers["Authorization"] = f"Bearer {await self.token()}"
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AsyncServiceAccountAuth is for httpx.AsyncClient; use OIDCClient's")
        yield request  # pragma: no cover

    def __repr__(self) -> str:
        return f"AsyncServiceAccountAuth(fetches={self.cache.fetches})"
