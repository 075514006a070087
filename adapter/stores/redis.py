"""Sessions in Redis, shared by every worker process and replica (the ``redis`` extra).

The cookie then carries only the sealed session id; the session (tokens included) lives under
``<redis-prefix>s:<sid>`` as JSON and expires with the session. Both redis-py clients are kept:
the synchronous one for the WSGI shell, the asyncio one for the ASGI shell. A Redis URL may
hold a password: it is never logged (messages name the host only).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any
from urllib.parse import urlsplit

from adapter.errors import ConfigError, StoreError

log = logging.getLogger("adapter")


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError(
            'session-store = "redis": the redis package is missing; '
            "pip install 'oidc-adapter[redis]'"
        ) from None
    return redis


class RedisStore:
    """Server-side sessions in Redis (``session-store = "redis"``)."""

    def __init__(self, url: str, prefix: str = "oidc:", *, socket_timeout: float = 2.0) -> None:
        redis = _redis_module()
        self.prefix = prefix
        self.where = _where(url)
        options = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        self._sync = redis.Redis.from_url(url, **options)
        self._async = redis.asyncio.Redis.from_url(url, **options)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._down = False  # in an outage: logged once, and once when it ends

    def _key(self, sid: str) -> str:
        return f"{self.prefix}s:{sid}"

    # -- synchronous (WSGI) -------------------------------------------------------------------

    def load(self, sid: str) -> dict[str, Any] | None:
        return _decode(self._call(self._sync.get, self._key(sid)))

    def save(self, sid: str, data: dict[str, Any], ttl: float = 0) -> None:
        self._call(self._sync.set, self._key(sid), _encode(data), ex=_seconds(ttl))

    def replace(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        """Save only if the session still exists (``SET ... XX``): no resurrection."""
        key, value = self._key(sid), _encode(data)
        return bool(self._call(self._sync.set, key, value, ex=_seconds(ttl), xx=True))

    def delete(self, sid: str) -> None:
        self._call(self._sync.delete, self._key(sid))

    # -- asynchronous (ASGI) ------------------------------------------------------------------

    async def load_async(self, sid: str) -> dict[str, Any] | None:
        return _decode(await self._call_async(self._async.get, self._key(sid)))

    async def save_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> None:
        await self._call_async(self._async.set, self._key(sid), _encode(data), ex=_seconds(ttl))

    async def replace_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        key, value = self._key(sid), _encode(data)
        return bool(await self._call_async(self._async.set, key, value, ex=_seconds(ttl), xx=True))

    async def delete_async(self, sid: str) -> None:
        await self._call_async(self._async.delete, self._key(sid))

    # -- failures: one log line per outage ----------------------------------------------------

    def _call(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
        except self._errors as exc:
            error = self._failure(exc)
        else:
            self._up()
            return result
        raise error  # outside the handler: redis-py's exception (and its URL) is not the context

    async def _call_async(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await command(*args, **kwargs)
        except self._errors as exc:
            error = self._failure(exc)
        else:
            self._up()
            return result
        raise error

    def _failure(self, exc: BaseException) -> StoreError:
        """A Redis failure, logged once per outage (not per request); never the URL's
        password (messages name the host only)."""
        error = StoreError(f"the session store at {self.where} failed ({type(exc).__name__})")
        if not self._down:
            self._down = True
            log.error("%s; sessions are unavailable until it answers again", error)
        return error

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("the session store at %s answers again", self.where)

    def close(self) -> None:
        self._sync.close()


def _where(url: str) -> str:
    """Host and port (or the socket path) of a Redis URL: never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"


def _seconds(ttl: float) -> int | None:
    return max(1, math.ceil(ttl)) if ttl > 0 else None


def _encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
