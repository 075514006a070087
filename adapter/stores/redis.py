"""Sessions in Redis, shared by every worker process and replica (the ``redis`` extra).

The cookie then carries only the sealed session id; the session (tokens included) lives under
``<redis-prefix>s:<sid>`` as JSON and expires with the session. Both redis-py clients are kept:
the synchronous one for the WSGI shell, the asyncio one for the ASGI shell. A Redis URL may
hold a password: it is never logged (messages name the host only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import secrets
import threading
import time
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

    def __init__(
        self,
        url: str,
        prefix: str = "oidc:",
        *,
        socket_timeout: float = 2.0,
        ca_pem: str | None = None,
    ) -> None:
        redis = _redis_module()
        self.prefix = prefix
        self.where = _where(url)
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        if ca_pem is not None and url.startswith("rediss://"):
            options["ssl_ca_data"] = ca_pem  # the deployment's truststore, as for the server
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
        if ttl <= 0:  # already past its max age: never a key without expiry
            self.delete(sid)
            return
        self._call(self._sync.set, self._key(sid), _encode(data), ex=_seconds(ttl))

    def replace(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        """Save only if the session still exists (``SET ... XX``): no resurrection."""
        if ttl <= 0:
            self.delete(sid)
            return False
        key, value = self._key(sid), _encode(data)
        return bool(self._call(self._sync.set, key, value, ex=_seconds(ttl), xx=True))

    def delete(self, sid: str) -> None:
        self._call(self._sync.delete, self._key(sid))

    # -- asynchronous (ASGI) ------------------------------------------------------------------

    async def load_async(self, sid: str) -> dict[str, Any] | None:
        return _decode(await self._call_async(self._async.get, self._key(sid)))

    async def save_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> None:
        if ttl <= 0:
            await self.delete_async(sid)
            return
        await self._call_async(self._async.set, self._key(sid), _encode(data), ex=_seconds(ttl))

    async def replace_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        if ttl <= 0:
            await self.delete_async(sid)
            return False
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


class RedisRegistry:
    """What the processes tell each other about sessions, through Redis (any session store).

    Records (``<prefix>ended:<sid>``, ``<prefix>logout-sid:<sid>``, ``<prefix>logout-sub:<sub>``,
    ``<prefix>jti:<jti>``) last as long as they matter and are read when a process meets a
    session for the first time; every change is also published on ``<prefix>events``, and each
    process's subscriber applies it to its own records and remembered decisions at once. The
    staleness window is Redis's delivery time; while the subscription is down a process
    remembers nothing (see :class:`Subscriber`).
    """

    def __init__(
        self,
        url: str,
        prefix: str = "oidc:",
        *,
        socket_timeout: float = 2.0,
        ca_pem: str | None = None,
    ) -> None:
        self.store = RedisStore(url, prefix, socket_timeout=socket_timeout, ca_pem=ca_pem)
        self.url = url
        self.ca_pem = ca_pem
        self.prefix = prefix
        self.channel = f"{prefix}events"

    # The operations, written once over a command runner (sync or async).

    def _end(
        self, sid: str, at: float, until: float
    ) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        event = json.dumps({"t": "end", "sid": sid, "at": at, "until": until})
        return [
            ("set", (f"{self.prefix}ended:{sid}", str(at)), {"px": _millis(until)}),
            ("publish", (self.channel, event), {}),
        ]

    def _logout(
        self, idp_sid: str | None, sub: str | None, at: float, until: float
    ) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        if idp_sid is not None:
            commands.append(
                ("set", (f"{self.prefix}logout-sid:{idp_sid}", str(at)), {"px": _millis(until)})
            )
        if sub is not None:
            commands.append(
                ("set", (f"{self.prefix}logout-sub:{sub}", str(at)), {"px": _millis(until)})
            )
        event = {"t": "logout", "sid": idp_sid, "sub": sub, "at": at, "until": until}
        commands.append(("publish", (self.channel, json.dumps(event)), {}))
        return commands

    def _check_keys(self, sid: str, idp_sid: str | None, sub: str | None) -> list[str]:
        return [
            f"{self.prefix}ended:{sid}",
            f"{self.prefix}logout-sid:{idp_sid or ''}",
            f"{self.prefix}logout-sub:{sub or ''}",
        ]

    @staticmethod
    def _records(values: list[Any], created_at: float) -> tuple[bool, bool, float | None]:
        """(ended, logged out by sid, the time of a logout of the user (or None))."""
        ended, by_sid, by_sub = values
        sub_at = float(by_sub) if by_sub is not None else None
        return ended is not None, by_sid is not None, sub_at

    # -- synchronous (WSGI) -------------------------------------------------------------------

    def perform(self, op: str, **args: Any) -> Any:
        client = self.store._sync
        if op == "check":
            keys = self._check_keys(args["sid"], args.get("idp_sid"), args.get("sub"))
            return self._records(self.store._call(client.mget, keys), args["at"])
        if op == "logout":
            key = f"{self.prefix}jti:{args['jti']}"
            fresh = self.store._call(client.set, key, "1", nx=True, px=_millis(args["jti_until"]))
            if not fresh:
                return False
            commands = self._logout(args.get("idp_sid"), args.get("sub"), args["at"], args["until"])
        elif op == "end":
            commands = self._end(args["sid"], args["at"], args["until"])
        else:  # changed
            event = json.dumps({"t": "changed", "sid": args["sid"]})
            commands = [("publish", (self.channel, event), {})]
        pipeline = client.pipeline(transaction=True)  # records and event together, or none
        for name, positional, keywords in commands:
            getattr(pipeline, name)(*positional, **keywords)
        try:
            self.store._call(pipeline.execute)
        except StoreError:
            if op == "logout":  # not recorded: the server's retry must not look like a replay
                with contextlib.suppress(StoreError):
                    self.store._call(client.delete, f"{self.prefix}jti:{args['jti']}")
            raise
        return True

    # -- asynchronous (ASGI) ------------------------------------------------------------------

    async def perform_async(self, op: str, **args: Any) -> Any:
        client = self.store._async
        if op == "check":
            keys = self._check_keys(args["sid"], args.get("idp_sid"), args.get("sub"))
            return self._records(await self.store._call_async(client.mget, keys), args["at"])
        if op == "logout":
            key = f"{self.prefix}jti:{args['jti']}"
            fresh = await self.store._call_async(
                client.set, key, "1", nx=True, px=_millis(args["jti_until"])
            )
            if not fresh:
                return False
            commands = self._logout(args.get("idp_sid"), args.get("sub"), args["at"], args["until"])
        elif op == "end":
            commands = self._end(args["sid"], args["at"], args["until"])
        else:
            event = json.dumps({"t": "changed", "sid": args["sid"]})
            commands = [("publish", (self.channel, event), {})]
        pipeline = client.pipeline(transaction=True)
        for name, positional, keywords in commands:
            getattr(pipeline, name)(*positional, **keywords)
        try:
            await self.store._call_async(pipeline.execute)
        except StoreError:
            if op == "logout":
                with contextlib.suppress(StoreError):
                    await self.store._call_async(client.delete, f"{self.prefix}jti:{args['jti']}")
            raise
        return True


class Subscriber:
    """One thread per process that applies the other processes' session events.

    ``on_event`` gets each decoded event; ``on_live(True/False)`` says when the subscription is
    up or down. While it is down, messages may be lost: the process forgets what it remembered
    and remembers nothing until it is back (then it re-reads records as sessions are met).
    """

    def __init__(
        self,
        registry: RedisRegistry,
        on_event: Any,
        on_live: Any,
        *,
        retry: float = 1.0,
    ) -> None:
        self._registry = registry
        self._on_event = on_event
        self._on_live = on_live
        self._retry = retry
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="oidc-session-events", daemon=True)

    def start(self) -> Subscriber:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        redis = _redis_module()
        complained = False
        while not self._stop.is_set():
            client = pubsub = None
            try:
                tls = {"ssl_ca_data": self._registry.ca_pem} if self._registry.ca_pem else {}
                if not self._registry.url.startswith("rediss://"):
                    tls = {}
                client = redis.Redis.from_url(
                    self._registry.url, socket_timeout=5, health_check_interval=5, **tls
                )
                pubsub = client.pubsub()
                pubsub.subscribe(self._registry.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        self._on_live(True)  # confirmed by Redis: from now on nothing is missed
                        complained = False
                    elif message.get("type") == "message":
                        self._apply(message.get("data"))
            except Exception as exc:  # whatever it is, the process must stop trusting memory
                if not complained:
                    complained = True
                    log.warning(
                        "session events from %s are not received (%s); every request is decided "
                        "afresh until they are",
                        self._registry.store.where,
                        type(exc).__name__,
                    )
            finally:
                self._on_live(False)
                for closable in (pubsub, client):
                    if closable is not None:
                        with contextlib.suppress(Exception):
                            closable.close()
            self._stop.wait(self._retry)

    def _apply(self, data: Any) -> None:
        """One event; a malformed one (another app on the same prefix, a bug) is skipped."""
        try:
            event = json.loads(data)
            if isinstance(event, dict):
                self._on_event(event)
        except Exception:
            log.warning("a malformed session event was skipped")


def _millis(until: float) -> int:
    """Milliseconds from now to ``until`` (at least 1: Redis refuses 0)."""
    return max(1, int((until - time.time()) * 1000))


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
LOCK_MARGIN_MILLIS = 5_000  # beyond the token call's own time bound
RESULT_MILLIS = 10_000  # the losers' window to pick the winner's tokens up (tokens: keep it short)
POLL_SECONDS = 0.02


class RefreshLock:
    """One refresh of a session across every process: a short Redis lock per session and
    refresh token (``SET NX PX`` with a random token, so only the holder releases it), and the
    holder's result kept briefly for the processes that lost the race. Without it two workers
    could spend the same rotating refresh token and the server would end the session."""

    def __init__(self, registry: RedisRegistry, call_seconds: float = 15.0) -> None:
        self._store = registry.store
        self._prefix = registry.prefix
        # Longer than the token call may take (its own total bound), with a margin: the lock
        # never expires under a holder that is still refreshing.
        self._lock_millis = int(call_seconds * 1000) + LOCK_MARGIN_MILLIS

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self._prefix}refresh-lock:{key}", f"{self._prefix}refreshed:{key}"

    def run(self, key: str, fetch: Any) -> Any:
        """``fetch()`` here if this process wins the lock, else the winner's result."""
        from adapter.protocol.tokens import TokenSet

        lock, result = self._keys(key)
        client, call = self._store._sync, self._store._call
        token = secrets.token_hex(16)
        deadline = time.monotonic() + 2 * self._lock_millis / 1000
        while True:
            stored = call(client.get, result)  # first: a refresh that already happened
            if stored is not None:
                return _load(TokenSet, stored)
            if call(client.set, lock, token, nx=True, px=self._lock_millis):
                try:
                    tokens = fetch()
                except BaseException:
                    with contextlib.suppress(StoreError):
                        call(client.eval, _RELEASE, 1, lock, token)
                    raise
                # The server has spent the old refresh token: these tokens are the session's
                # now, whatever happens to the bookkeeping below.
                with contextlib.suppress(StoreError):
                    call(client.set, result, _dump(tokens), px=RESULT_MILLIS)
                    call(client.eval, _RELEASE, 1, lock, token)
                return tokens
            if time.monotonic() > deadline:
                raise StoreError("a refresh in another process did not finish in time")
            time.sleep(POLL_SECONDS)  # the other process is refreshing: its result comes soon

    async def run_async(self, key: str, fetch: Any) -> Any:
        """:meth:`run` for the asyncio client."""
        import asyncio

        from adapter.protocol.tokens import TokenSet

        lock, result = self._keys(key)
        client, call = self._store._async, self._store._call_async
        token = secrets.token_hex(16)
        deadline = time.monotonic() + 2 * self._lock_millis / 1000
        while True:
            stored = await call(client.get, result)  # first: a refresh that already happened
            if stored is not None:
                return _load(TokenSet, stored)
            if await call(client.set, lock, token, nx=True, px=self._lock_millis):
                try:
                    tokens = await fetch()
                except BaseException:
                    with contextlib.suppress(StoreError):
                        await call(client.eval, _RELEASE, 1, lock, token)
                    raise
                with contextlib.suppress(StoreError):
                    await call(client.set, result, _dump(tokens), px=RESULT_MILLIS)
                    await call(client.eval, _RELEASE, 1, lock, token)
                return tokens
            if time.monotonic() > deadline:
                raise StoreError("a refresh in another process did not finish in time")
            await asyncio.sleep(POLL_SECONDS)


def _dump(tokens: Any) -> bytes:
    return json.dumps({"raw": dict(tokens.raw), "expires_at": tokens.expires_at}).encode()


def _load(kind: Any, stored: Any) -> Any:
    document = json.loads(stored)
    tokens = kind.from_response(document["raw"])
    return dataclasses.replace(tokens, expires_at=document.get("expires_at"))
