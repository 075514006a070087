"""Sessions in Redis, shared by every worker process and replica (the ``redis`` extra).

The cookie then carries only the sealed session id; the session (tokens included) lives under
``<redis-prefix>s:<sid>`` as JSON and expires with the session. Both redis-py clients are kept:
the synchronous one for the WSGI shell, the asyncio one for the ASGI shell. A Redis URL may
hold a password: it is never logged (messages name the host only). A ``redis+sentinel://`` URL
reaches the primary through Sentinel (redis-py's ``master_for``): every command asks for the
current primary's address when it connects, so a failover needs no restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import itertools
import json
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from adapter.config._redis_url import is_sentinel_url, parse_sentinel_url
from adapter.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from adapter.stores._interface import SessionOwner

log = logging.getLogger(__name__)
Command = tuple[str, tuple[Any, ...], dict[str, Any]]  # a redis-py method, its arguments


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
        self._sync = connect(url, options, ca_pem)
        self._async = connect(url, options, ca_pem, asynchronous=True)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._down = False  # in an outage: logged once, and once when it ends

    def _key(self, sid: str) -> str:
        return f"{self.prefix}s:{sid}"

    def index_key(self, kind: str, app: str, name: str) -> str:
        """The sessions of one server session (``by-sid``) or user (``by-sub``) of one app:
        ``<prefix>by-sid:<app>:<sid>``, a sorted set of session ids scored by the time they were
        saved, so that a back-channel logout of a user deletes only sessions created before it
        (:meth:`RedisRegistry.perform`)."""
        return f"{self.prefix}{kind}:{app}:{name}"

    def _save(
        self, sid: str, data: dict[str, Any], ttl: float, owner: SessionOwner | None
    ) -> list[Command]:
        """The session, and (at its first save) its entries in its owner's indexes; an index
        lives as long as its newest session, and drops entries saved longer ago than a new
        session may live (sessions that have expired)."""
        seconds = _seconds(ttl)
        commands: list[Command] = [("set", (self._key(sid), _encode(data)), {"ex": seconds})]
        now = time.time()
        names = (("by-sid", owner.idp_sid), ("by-sub", owner.sub)) if owner is not None else ()
        for kind, name in names:
            if owner is not None and name is not None:
                key = self.index_key(kind, owner.app, name)
                commands += [
                    ("zadd", (key, {sid: now}), {}),
                    ("zremrangebyscore", (key, "-inf", f"({now - ttl}"), {}),
                    ("expire", (key, seconds), {}),
                ]
        return commands

    # -- synchronous (WSGI) -------------------------------------------------------------------

    def load(self, sid: str) -> dict[str, Any] | None:
        return _decode(self._call(self._sync.get, self._key(sid)))

    def save(
        self, sid: str, data: dict[str, Any], ttl: float = 0, owner: SessionOwner | None = None
    ) -> None:
        if ttl <= 0:  # already past its max age: never a key without expiry
            self.delete(sid)
            return
        self.run(self._save(sid, data, ttl, owner))

    def replace(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        """Save only if the session still exists (``SET ... XX``): no resurrection."""
        if ttl <= 0:
            self.delete(sid)
            return False
        key, value = self._key(sid), _encode(data)
        return bool(self._call(self._sync.set, key, value, ex=_seconds(ttl), xx=True))

    def delete(self, sid: str) -> None:
        self._call(self._sync.delete, self._key(sid))

    def run(self, commands: list[Command], *, quiet: bool = False) -> list[Any]:
        """``commands`` in one transaction (``MULTI``/``EXEC``: all or none), their results;
        ``quiet``: a failure is not logged (a retry of what already failed and was logged)."""
        call = self._quiet if quiet else self._call
        if len(commands) == 1:
            name, positional, keywords = commands[0]
            return [call(getattr(self._sync, name), *positional, **keywords)]
        pipeline = self._sync.pipeline(transaction=True)
        for name, positional, keywords in commands:
            getattr(pipeline, name)(*positional, **keywords)
        return list(call(pipeline.execute))

    def _quiet(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except self._errors as exc:
            error = StoreError(f"the session store at {self.where} failed ({type(exc).__name__})")
        raise error

    # -- asynchronous (ASGI) ------------------------------------------------------------------

    async def load_async(self, sid: str) -> dict[str, Any] | None:
        return _decode(await self._call_async(self._async.get, self._key(sid)))

    async def save_async(
        self, sid: str, data: dict[str, Any], ttl: float = 0, owner: SessionOwner | None = None
    ) -> None:
        if ttl <= 0:
            await self.delete_async(sid)
            return
        await self.run_async(self._save(sid, data, ttl, owner))

    async def replace_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        if ttl <= 0:
            await self.delete_async(sid)
            return False
        key, value = self._key(sid), _encode(data)
        return bool(await self._call_async(self._async.set, key, value, ex=_seconds(ttl), xx=True))

    async def delete_async(self, sid: str) -> None:
        await self._call_async(self._async.delete, self._key(sid))

    async def run_async(self, commands: list[Command]) -> list[Any]:
        """:meth:`run` with the asyncio client."""
        if len(commands) == 1:
            name, positional, keywords = commands[0]
            return [await self._call_async(getattr(self._async, name), *positional, **keywords)]
        pipeline = self._async.pipeline(transaction=True)
        for name, positional, keywords in commands:
            getattr(pipeline, name)(*positional, **keywords)
        return list(await self._call_async(pipeline.execute))

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


def connect(
    url: str, options: dict[str, Any], ca_pem: str | None = None, *, asynchronous: bool = False
) -> Any:
    """A redis-py client (sync or asyncio) for ``url`` with these connection options.

    ``redis+sentinel://``: the client of Sentinel's ``master_for``, which asks the Sentinels
    for the primary whenever it connects (and drops a connection to a demoted primary). TLS
    (``rediss``) trusts ``ca_pem``, the deployment's truststore, as for the identity server."""
    redis = _redis_module()
    options = dict(options)
    if not is_sentinel_url(url):
        if ca_pem is not None and url.startswith("rediss://"):
            options["ssl_ca_data"] = ca_pem
        return (redis.asyncio.Redis if asynchronous else redis.Redis).from_url(url, **options)
    target = parse_sentinel_url(url)
    tls: dict[str, Any] = {"ssl": True} if target.tls else {}
    if target.tls and ca_pem is not None:
        tls["ssl_ca_data"] = ca_pem
    to_sentinels = {k: v for k, v in options.items() if k.startswith("socket_")} | tls
    if target.sentinel_password is not None:
        to_sentinels["password"] = target.sentinel_password
    module = redis.asyncio.sentinel if asynchronous else redis.sentinel
    sentinel = module.Sentinel(
        target.sentinels,
        sentinel_kwargs=to_sentinels,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
        **tls,
    )
    return sentinel.master_for(target.service)


def _where(url: str) -> str:
    """Host and port (or the socket path) of a Redis URL: never its password."""
    if is_sentinel_url(url):
        with contextlib.suppress(ConfigError):
            return parse_sentinel_url(url).where
        return "redis+sentinel://(a malformed URL)"
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

    Records last as long as they matter and are read when a process meets a session for the
    first time; every change is also published on ``<prefix>events``, and each process's
    subscriber applies it to its own records and remembered decisions at once. The staleness
    window is Redis's delivery time; while the subscription is down a process remembers nothing
    (see :class:`Subscriber`).

    The identity server's names (its session ids, users, logout tokens) are unique only within
    one issuer, so their records are keyed by ``app``, a short scope of the issuer and client
    that the core computes (:func:`adapter.web._session_cookies.app_scope`), and every event
    carries it: ``<prefix>logout-sid:<app>:<sid>``, ``<prefix>logout-sub:<app>:<sub>``,
    ``<prefix>jti:<app>:<jti>``, and the Redis store's indexes ``<prefix>by-sid:<app>:<sid>``
    and ``<prefix>by-sub:<app>:<sub>``. Apps of other issuers or clients on the same Redis, even
    with the same prefix, so never act on each other's logouts (a subscriber skips their
    events). ``<prefix>ended:<id>`` and ``<prefix>s:<id>`` name this adapter's own random
    session ids, which belong to one app by construction.

    A back-channel logout also deletes the Redis store's sessions it names (found through the
    indexes). An end of a session that Redis refuses is kept and written again by
    :class:`PendingEnds` until Redis takes it.
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
        self.pending = PendingEnds(self)

    def _name(self, kind: str, app: str, name: str) -> str:
        return f"{self.prefix}{kind}:{app}:{name}"

    def _event(self, kind: str, args: dict[str, Any], **fields: Any) -> Command:
        """Publish an event; it names its app when the step did (a caller of the library may
        publish ``changed`` without one: subscribers take such an event as anyone's)."""
        app = args.get("app")
        event = {"t": kind, **({"app": app} if app else {}), **fields}
        return ("publish", (self.channel, json.dumps(event)), {})

    # The operations, written once as command lists; perform / perform_async run them.

    def end_commands(self, args: dict[str, Any]) -> list[Command]:
        """Session ``sid`` ended: with ``purge``, its data in the Redis store deleted; its
        record, and the event."""
        sid, at, until = args["sid"], args["at"], args["until"]
        commands: list[Command] = []
        if args.get("purge"):
            commands.append(("delete", (self.store._key(sid),), {}))
        return [
            *commands,
            ("set", (f"{self.prefix}ended:{sid}", str(at)), {"px": _millis(until)}),
            self._event("end", args, sid=sid, at=at, until=until),
        ]

    def _logout(self, args: dict[str, Any]) -> list[Command]:
        """The records of a logout at the server, the event, and the look-up (and removal) of
        the Redis store's sessions it names: every one of a server session, those of a user
        saved before the logout."""
        app, idp_sid, sub = args.get("app") or "", args.get("idp_sid"), args.get("sub")
        at, until = args["at"], args["until"]
        commands: list[Command] = []
        if idp_sid is not None:
            index = self.store.index_key("by-sid", app, idp_sid)
            commands += [
                ("set", (self._name("logout-sid", app, idp_sid), str(at)), {"px": _millis(until)}),
                ("zrangebyscore", (index, "-inf", "+inf"), {}),
                ("delete", (index,), {}),
            ]
        if sub is not None:
            index = self.store.index_key("by-sub", app, sub)
            commands += [
                ("set", (self._name("logout-sub", app, sub), str(at)), {"px": _millis(until)}),
                ("zrangebyscore", (index, "-inf", at), {}),
                ("zremrangebyscore", (index, "-inf", at), {}),
            ]
        front = {"front": True} if args.get("front") else {}  # unauthenticated: kept apart
        commands.append(
            self._event("logout", args, sid=idp_sid, sub=sub, at=at, until=until, **front)
        )
        return commands

    def _commands(self, op: str, args: dict[str, Any]) -> list[Command]:
        if op == "logout":
            return self._logout(args)
        if op == "end":
            return self.end_commands(args)
        return [self._event("changed", args, sid=args["sid"])]

    def _named_sessions(self, commands: list[Command], results: list[Any]) -> list[str]:
        """The Redis store's keys of the sessions a logout's look-ups found."""
        found = {
            member.decode() if isinstance(member, bytes) else str(member)
            for (name, _, _), members in zip(commands, results, strict=True)
            if name == "zrangebyscore"
            for member in members
        }
        return [self.store._key(sid) for sid in sorted(found)]

    def _proof(self, args: dict[str, Any]) -> tuple[str, int]:
        """The key of a DPoP proof's ``jti`` and how long it lives (its window)."""
        key = self._name("dpop", args.get("app") or "", args["jti"])
        return key, _millis(args["jti_until"]) + 1000  # a second past the window's edge

    def _jti(self, args: dict[str, Any]) -> str:
        return self._name("jti", args.get("app") or "", args["jti"])

    def _check_keys(self, args: dict[str, Any]) -> list[str]:
        app = args.get("app") or ""
        return [
            f"{self.prefix}ended:{args['sid']}",
            self._name("logout-sid", app, args.get("idp_sid") or ""),
            self._name("logout-sub", app, args.get("sub") or ""),
        ]

    @staticmethod
    def _records(values: list[Any]) -> tuple[bool, bool, float | None]:
        """(ended, logged out by sid, the time of a logout of the user (or None))."""
        ended, by_sid, by_sub = values
        sub_at = float(by_sub) if by_sub is not None else None
        return ended is not None, by_sid is not None, sub_at

    def _refused(self, op: str, args: dict[str, Any]) -> None:
        """Redis refused an operation's writes: an end is kept to be written again."""
        if op == "end":
            self.pending.add(args)

    def _purge_failed(self, count: int) -> None:
        log.warning(
            "back-channel logout: %d session(s) refused everywhere, but their data could not be "
            "deleted from the session store (it expires with the sessions)",
            count,
        )

    # -- synchronous (WSGI) -------------------------------------------------------------------

    def perform(self, op: str, **args: Any) -> Any:
        """``check`` (the records of a session), ``logout`` (``False`` for a replayed
        ``jti``), ``end`` or ``changed``; :class:`StoreError` when Redis refuses."""
        store, client = self.store, self.store._sync
        if op == "check":
            return self._records(store._call(client.mget, self._check_keys(args)))
        if op == "proof":  # a DPoP proof: used once, by any process
            key, px = self._proof(args)
            return bool(store._call(client.set, key, "1", nx=True, px=px))
        if op == "logout":
            jti_px = _millis(args["jti_until"])
            if not store._call(client.set, self._jti(args), "1", nx=True, px=jti_px):
                return False
        commands = self._commands(op, args)
        try:
            results = store.run(commands)  # records and event together, or none
        except StoreError:
            if op == "logout":  # not recorded: the server's retry must not look like a replay
                with contextlib.suppress(StoreError):
                    store._call(client.delete, self._jti(args))
            self._refused(op, args)
            raise
        doomed = self._named_sessions(commands, results) if op == "logout" else []
        if doomed:
            try:
                store._call(client.delete, *doomed)
            except StoreError:
                self._purge_failed(len(doomed))
        return True

    # -- asynchronous (ASGI) ------------------------------------------------------------------

    async def perform_async(self, op: str, **args: Any) -> Any:
        """:meth:`perform` with the asyncio client."""
        store, client = self.store, self.store._async
        if op == "check":
            return self._records(await store._call_async(client.mget, self._check_keys(args)))
        if op == "proof":
            key, px = self._proof(args)
            return bool(await store._call_async(client.set, key, "1", nx=True, px=px))
        if op == "logout":
            jti_px = _millis(args["jti_until"])
            if not await store._call_async(client.set, self._jti(args), "1", nx=True, px=jti_px):
                return False
        commands = self._commands(op, args)
        try:
            results = await store.run_async(commands)
        except StoreError:
            if op == "logout":
                with contextlib.suppress(StoreError):
                    await store._call_async(client.delete, self._jti(args))
            self._refused(op, args)
            raise
        doomed = self._named_sessions(commands, results) if op == "logout" else []
        if doomed:
            try:
                await store._call_async(client.delete, *doomed)
            except StoreError:
                self._purge_failed(len(doomed))
        return True


RETRY_FIRST_SECONDS = 0.25  # the first retry of an end that Redis refused
RETRY_MAX_SECONDS = 2.0  # retries back off (doubling) to this interval
MAX_PENDING_ENDS = 10_000
_RETRY_BATCH = 256  # ends written in one transaction


class PendingEnds:
    """Ends of sessions that Redis refused, written again until it takes them.

    When Redis refuses an end (down, a read-only replica after a failover, out of memory with
    ``noeviction``), the session has already ended in this process and in the browser, and the
    logout said so (503). The other processes learn of it only through Redis, so the end (the
    Redis store's session deleted, its ``ended:`` record, its event) is kept here, one entry per
    session, and one thread per process writes them again, in transactions of up to 256: after
    0.25 s, then at doubling intervals up to 2 s, until Redis takes them. Redis is not asked
    whether it is back (a read-only replica answers reads): the write itself is the test. An
    end whose session would have expired by then is dropped, and beyond 10,000 the oldest is
    given up (logged). The thread ends when nothing is pending; a forked worker starts its own.
    """

    def __init__(self, registry: RedisRegistry) -> None:
        self._registry = registry
        self._ends: OrderedDict[str, dict[str, Any]] = OrderedDict()  # sid -> the end's args
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, args: dict[str, Any]) -> None:
        """Keep the end of ``args["sid"]`` to be written again (and start the thread)."""
        given_up = 0
        with self._lock:
            self._ends[args["sid"]] = dict(args)
            self._ends.move_to_end(args["sid"])
            while len(self._ends) > MAX_PENDING_ENDS:
                self._ends.popitem(last=False)
                given_up += 1
            if not self._stop.is_set() and (self._thread is None or self._pid != os.getpid()):
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="oidc-session-ends", daemon=True
                )
                self._thread.start()
        if given_up:
            log.error("%d ended session(s) will not be told to other processes: too many", given_up)

    def __len__(self) -> int:
        return len(self._ends)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while not self._stop.wait(delay):
            if not self._write():
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_FIRST_SECONDS
            with self._lock:  # under the lock: an end added now finds no thread and starts one
                if not self._ends:
                    self._thread = None
                    return

    def _write(self) -> bool:
        """Write one batch; ``False`` when Redis refused it (the outage was logged already)."""
        now = time.time()
        with self._lock:
            for sid in [sid for sid, args in self._ends.items() if args["until"] <= now]:
                del self._ends[sid]  # expired meanwhile: nothing left to refuse
            batch = list(itertools.islice(self._ends.values(), _RETRY_BATCH))
        if not batch:
            return True
        commands = [c for args in batch for c in self._registry.end_commands(args)]
        try:
            self._registry.store.run(commands, quiet=True)
        except StoreError:
            return False
        with self._lock:
            for args in batch:
                if self._ends.get(args["sid"]) is args:
                    del self._ends[args["sid"]]
        log.warning(
            "%d ended session(s) that the session store refused before are recorded now, and "
            "told to the other processes",
            len(batch),
        )
        return True


def _subscriber_options() -> dict[str, Any]:
    """No retry inside redis-py: a lost connection must reach :class:`Subscriber`'s loop (which
    forgets what may have been missed), never be re-subscribed silently (after a failover too)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_timeout": 5, "health_check_interval": 5, "retry": Retry(NoBackoff(), 0)}


class Subscriber:
    """One thread per process that applies the other processes' session events.

    ``on_event`` gets each decoded event; ``on_live(True/False)`` says when the subscription is
    up or down. While it is down, messages may be lost: the process forgets what it remembered
    and remembers nothing until it is back (then it re-reads records as sessions are met).

    Bound methods are held weakly: when their owner (the middleware's shell support) is gone
    without being closed, the thread ends within a second instead of reconnecting forever.
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
        self._on_event = _held_weakly(on_event)
        self._on_live = _held_weakly(on_live)
        self._retry = retry
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="oidc-session-events", daemon=True)

    def start(self) -> Subscriber:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        complained = False
        while not self._stop.is_set():
            client = pubsub = None
            try:
                client = connect(self._registry.url, _subscriber_options(), self._registry.ca_pem)
                pubsub = client.pubsub()
                pubsub.subscribe(self._registry.channel)
                subscribed = False
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        self._call(self._on_live, None)  # only: is anybody still listening?
                        continue
                    if message.get("type") == "subscribe":
                        if subscribed:  # subscribed again by redis-py: a gap, events missed
                            self._call(self._on_live, False)
                        subscribed = True
                        # Confirmed by Redis: from now on nothing is missed.
                        self._call(self._on_live, True)
                        complained = False
                    elif message.get("type") == "message":
                        self._apply(message.get("data"))
            except Exception as exc:  # whatever it is, the process must stop trusting memory
                if not complained and not self._stop.is_set():
                    complained = True
                    log.warning(
                        "session events from %s are not received (%s); every request is decided "
                        "afresh until they are",
                        self._registry.store.where,
                        type(exc).__name__,
                    )
            finally:
                self._call(self._on_live, False)
                for closable in (pubsub, client):
                    if closable is not None:
                        with contextlib.suppress(Exception):
                            closable.close()
            self._stop.wait(self._retry)

    def _call(self, held: Callable[[], Any], argument: Any) -> None:
        """Call a held callback (``None``: only look whether its owner is still there); once
        the owner is gone, the thread stops."""
        callback = held()
        if callback is None:
            self._stop.set()
        elif argument is not None:
            callback(argument)

    def _apply(self, data: Any) -> None:
        """One event; a malformed one (another app on the same prefix, a bug) is skipped."""
        try:
            event = json.loads(data)
            if isinstance(event, dict):
                self._call(self._on_event, event)
        except Exception:
            log.warning("a malformed session event was skipped")


def _held_weakly(callback: Any) -> Callable[[], Any]:
    """A bound method by a weak reference (its object may go); anything else as it is."""
    if inspect.ismethod(callback):
        return weakref.WeakMethod(callback)
    return lambda: callback


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
                    # A holder may have stored its result and let go since the check above:
                    # without this second look the old refresh token would be spent twice.
                    stored = call(client.get, result)
                    tokens = fetch() if stored is None else _load(TokenSet, stored)
                except BaseException:
                    with contextlib.suppress(StoreError):
                        call(client.eval, _RELEASE, 1, lock, token)
                    raise
                # The server has spent the old refresh token: these tokens are the session's
                # now, whatever happens to the bookkeeping below.
                with contextlib.suppress(StoreError):
                    if stored is None:
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
                    stored = await call(client.get, result)  # see run(): a second look
                    tokens = await fetch() if stored is None else _load(TokenSet, stored)
                except BaseException:
                    with contextlib.suppress(StoreError):
                        await call(client.eval, _RELEASE, 1, lock, token)
                    raise
                with contextlib.suppress(StoreError):
                    if stored is None:
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
