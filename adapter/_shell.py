"""What the ASGI and WSGI shells share: the current state's core, reloads, the status, and
the performing of the core's steps.

Kept out of both shells so that neither holds anything but translation: the core for a state
is built once per state (and so per reload), the memory session store and the refresh
coordinator outlive reloads, and the reloader watches the configuration's files. The core's
steps go through one dispatch, :func:`perform`, to a shell's I/O: :class:`SyncSteps` (WSGI)
or :class:`AsyncSteps` (ASGI); so do the policy enforcer's checks in code
(``identity.has_permission``: :class:`ShellAuthorizer`).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, assert_never, cast

from adapter.config import AdapterConfig
from adapter.config.access_rules import public_overlaps
from adapter.errors import ConfigError
from adapter.protocol._single_flight import SingleFlight
from adapter.protocol.dpop import ProofMemory
from adapter.protocol.tokens import TokenSet
from adapter.reload import Reloader, ReloadStatus
from adapter.state import AdapterState
from adapter.stores import MemoryStore, SessionStore
from adapter.web._decisions import DecisionCache, server_names
from adapter.web._guard import enforcer_missing, parse_permission
from adapter.web._session_cookies import Sharing, app_scope, secure_over_http
from adapter.web._steps import (
    Handling,
    Identity,
    NeedFlow,
    NeedIntrospection,
    NeedKeys,
    NeedMetadata,
    NeedRefresh,
    NeedShared,
    NeedStore,
    Proceed,
    SharedRecords,
    Step,
    TokenExchanger,
    drive,
    drive_async,
)
from adapter.web.core import WebCore
from adapter.web.entry import Front
from adapter.web.session import EndedSessions, SeenSessions, ServerLogouts

if TYPE_CHECKING:
    from adapter.protocol.client import AsyncOIDCClient, OIDCClient
    from adapter.protocol.flows import Flow
    from adapter.stores.redis import RedisRegistry, Subscriber
    from adapter.web._enforcer import PolicyEnforcer

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
REFRESH_REUSE_SECONDS = 30.0  # a refresh result serves the requests that waited, and stragglers
REFRESH_BACKOFF_SECONDS = 5.0  # a failed refresh is not retried for this long (per session)
INTROSPECTION_REUSE_SECONDS = 2.0  # an introspection answer serves its token's stragglers


class ShellSupport:
    """State-bound cores, one memory store and refresh coordinator, and the reloader."""

    def __init__(
        self,
        config: AdapterConfig | str | Path,
        current: StateHolder,
        watch: float | None,
        load: Callable[[], AdapterConfig] | None = None,
        registries: RedisRegistries | None = None,
    ) -> None:
        """``load`` reads the configuration on a reload when its file alone does not say it
        all (a tenant's: :func:`adapter.config.tenants.load_tenant_config`). ``registries``:
        the Redis registries this shell shares with the other tenants of its middleware (one
        per Redis; by default its own)."""
        self._holder = current
        self._last: tuple[AdapterState, Front] | None = None  # the latest state's entry
        _warn_loosened(current.state.config)  # once, at start-up (a reload does not repeat it)
        self.memory_store = MemoryStore()
        self.ended_sessions = EndedSessions()  # logouts outlive reloads, like the memory store
        self.server_logouts = ServerLogouts()
        self.proofs = ProofMemory()  # DPoP proofs used, across reloads
        # Cleared on a new state; a back-channel logout forgets only the sessions it names.
        self.decisions: DecisionCache[Proceed] = DecisionCache(names=_session_names)
        self.seen = SeenSessions()  # sessions whose shared records this process has read
        self.io: SyncSteps | AsyncSteps | None = None  # its steps (they register themselves)
        # Built once (like the HTTP client): a reload keeps the store and the registry (it
        # refuses a change of redis-url, redis-prefix or the truststore).
        web = current.state.config.web
        registries = registries if registries is not None else RedisRegistries()
        self._shared = registries.shared(current.state.config)
        self.registry = self._shared.registry if self._shared is not None else None
        self.store: SessionStore = self.memory_store
        if self.registry is not None and web.session_store == "redis":
            self.store = self.registry.store
        self.live = self.registry is None  # True: nothing can be missed, decisions may be kept
        self._generation = 0
        # Observability (and tests): events heard from any process (another app's: skipped).
        self.events_applied = 0
        self._events = threading.Condition()
        # Without a session-secret: one random key for the life of the process, so a reload
        # does not log everybody out (a restart still does, and workers do not share it).
        self.random_session_key = secrets.token_bytes(32)
        if watch is not None and watch <= 0:
            raise ConfigError("watch: the polling interval must be more than 0 seconds")
        # One refresh per session and one introspection per token in flight (per process).
        self.refreshes: SingleFlight[TokenSet] = SingleFlight(
            success_ttl=REFRESH_REUSE_SECONDS, failure_ttl=REFRESH_BACKOFF_SECONDS
        )
        # Answers are reused for a few seconds too: a request that checked the core's refused
        # tokens just before another's call landed must not make a second call.
        self.introspections: SingleFlight[dict[str, Any]] = SingleFlight(
            success_ttl=INTROSPECTION_REUSE_SECONDS, failure_ttl=INTROSPECTION_REUSE_SECONDS
        )
        source = config.source if isinstance(config, AdapterConfig) else Path(config)
        self.reloader: Reloader | None = None
        if source is not None:
            self.reloader = Reloader(source, lambda: current.state, current.swap, load)
        elif watch is not None:
            raise ConfigError("watch: needs the configuration as a file path, not an object")
        self.watch = watch
        if self._shared is not None:  # last: its events may reach this shell from now on
            self._shared.add(self)

    def front(self) -> tuple[AdapterState, Front]:
        """The current state and its entry (built with its core on first use of that state)."""
        last = self._last
        if last is not None and last[0] is self._holder.state:
            return last
        state = self._holder.state
        front = state.derived.get("front")
        if front is None:
            _note_guarded_public_paths(state.config)
            self.decisions.renew()  # decided under the previous configuration
            authorizer = ShellAuthorizer(state, self.io) if self.io is not None else None
            core = WebCore(
                state.config,
                state.ring,
                self.random_session_key,
                self.ended_sessions,
                self.server_logouts,
                sharing=Sharing(
                    self.registry is not None, self.is_live, self.seen, self.generation
                ),
                decisions=self.decisions,
                proofs=self.proofs,
                exchanger=self._holder if isinstance(self._holder, TokenExchanger) else None,
                authorizer=authorizer,
            )
            if authorizer is not None:
                authorizer.enforcer = core.enforcer
            front = state.derived["front"] = Front(core)
        self._last = (state, front)
        self._ensure_subscriber()
        return state, front

    def core(self) -> tuple[AdapterState, WebCore]:
        """The current state and its core (tests, benchmarks and tools look inside)."""
        state, front = self.front()
        return state, front.core

    def refresh_once(self, key: str, fetch: Callable[[], T]) -> Callable[[], T]:
        """``fetch`` behind the cross-process refresh lock when Redis is configured."""
        if self.registry is None:
            return fetch
        from adapter.stores.redis import RefreshLock

        lock = RefreshLock(self.registry, self._call_seconds())
        return lambda: cast(T, lock.run(key, fetch))

    def refresh_once_async(
        self, key: str, fetch: Callable[[], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        """:meth:`refresh_once` for the asyncio client."""
        if self.registry is None:
            return fetch
        from adapter.stores.redis import RefreshLock

        lock = RefreshLock(self.registry, self._call_seconds())

        async def locked() -> T:
            return cast(T, await lock.run_async(key, fetch))

        return locked

    def _call_seconds(self) -> float:
        """How long one call to the identity server may take in all (the client's bound)."""
        config = self._holder.state.config
        return (config.connection_timeout_millis + config.socket_timeout_millis) / 1000

    def generation(self) -> int:
        """Changes whenever the subscription comes or goes: a record read before a change
        cannot be trusted after it."""
        return self._generation

    def close(self) -> None:
        """Stop hearing session events (the middleware's ``close``/``aclose``): the last of
        the shells sharing a registry stops its subscriber."""
        if self._shared is not None:
            self._shared.release(self)

    @property
    def subscriber(self) -> Subscriber | None:
        """This process's session-event subscriber (shared with the tenants on one Redis)."""
        return self._shared.subscriber if self._shared is not None else None

    def is_live(self) -> bool:
        """Whether this process hears every other process's session events right now."""
        return self.live

    def _ensure_subscriber(self) -> None:
        """One subscriber thread per process and Redis (a forked worker starts its own)."""
        if self._shared is not None:
            self._shared.ensure_subscriber()

    def _set_live(self, live: bool) -> None:
        """Subscribed (confirmed by Redis) or not: either way, what was read or remembered
        before may have missed an event, so it is all read again."""
        with self._events:
            if live == self.live:
                return
            self._generation += 1
            self.seen.clear()
            self.decisions.clear()
            self.live = live
            self._events.notify_all()

    def wait_for_events(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` events have been applied (``False`` on timeout)."""
        with self._events:
            return self._events.wait_for(lambda: self.events_applied >= count, timeout)

    def wait_until_live(self, timeout: float, live: bool = True) -> bool:
        """Wait until the subscription is up (or, with ``live=False``, down); ``False`` on
        timeout."""
        with self._events:
            return self._events.wait_for(lambda: self.live is live, timeout)

    def _apply_event(self, event: dict[str, Any]) -> None:
        self._apply(event)
        with self._events:
            self.events_applied += 1
            self._events.notify_all()

    def _apply(self, event: dict[str, Any]) -> None:
        """Another process (or this one) ended, logged out or changed a session.

        Events of other apps (another issuer or client on the same Redis and prefix) are
        skipped. An ``end`` or ``changed`` without ``app`` (from an older version, during a
        rolling upgrade) is applied: it names a random session id, one app's by construction."""
        kind, sid, app = event.get("t"), event.get("sid"), event.get("app")
        config = self._holder.state.config
        legacy = app is None and kind in ("end", "changed")
        if app != _scope(config.issuer, config.client_id) and not legacy:
            return
        at, until = float(event.get("at") or 0), float(event.get("until") or 0)
        ended, logouts = self.ended_sessions, self.server_logouts
        watermarks = ended.watermark, logouts.watermark
        if kind == "end" and isinstance(sid, str):
            ended.end(sid, at, until)
            self.decisions.forget_session(sid)
        elif kind == "changed" and isinstance(sid, str):
            self.decisions.forget_session(sid)
        elif kind == "logout":
            sub = event.get("sub")
            logouts.apply(
                sid if isinstance(sid, str) else None,
                sub if isinstance(sub, str) else None,
                at,
                until,
                front=event.get("front") is True,
            )
            self.decisions.forget_named(server_names(sid, sub))  # only the sessions it names
        if (ended.watermark, logouts.watermark) != watermarks:
            self.decisions.clear()  # a full record now refuses older sessions wholesale

    def reload(self) -> bool:
        """Reload the configuration now; ``False`` (old state kept) when it is broken."""
        if self.reloader is None:
            raise ConfigError("reload: the configuration was given as an object, not a file")
        return self.reloader.reload()

    @property
    def status(self) -> ReloadStatus | None:
        """Load times, the last reload error and key states (``None`` without a file)."""
        if self.reloader is not None:
            self.reloader.refresh_key_states()
            return self.reloader.status
        return None


class StepIO(Protocol[R_co]):
    """A shell's I/O for the core's steps, one method per kind of step: each gives the step's
    answer (:class:`SyncSteps`, the WSGI shell's) or an awaitable of it (:class:`AsyncSteps`,
    the ASGI shell's)."""

    def metadata(self) -> R_co: ...
    def keys(self, kid: str | None, alg: str) -> R_co: ...
    def flow(self, flow: Flow[Any], state: AdapterState, timeout: float | None) -> R_co: ...
    def refresh(self, step: NeedRefresh, state: AdapterState) -> R_co: ...
    def introspection(self, step: NeedIntrospection, state: AdapterState) -> R_co: ...
    def store(self, step: NeedStore) -> R_co: ...
    def shared(self, step: NeedShared) -> R_co: ...


def perform(step: Step, state: AdapterState, io: StepIO[R]) -> R:
    """Perform one of the core's steps with a shell's ``io``, for a request that holds
    ``state``: the one dispatch of both shells (``drive_async`` awaits what async I/O gives)."""
    match step:
        case NeedMetadata():
            return io.metadata()
        case NeedKeys():
            return io.keys(step.kid, step.alg)
        case NeedFlow():
            return io.flow(step.flow, state, step.timeout)
        case NeedRefresh():
            return io.refresh(step, state)
        case NeedIntrospection():
            return io.introspection(step, state)
        case NeedStore():
            return io.store(step)
        case NeedShared():
            return io.shared(step)
    raise TypeError(f"unknown step {type(step).__name__}")


class SyncSteps:
    """:class:`StepIO` with the synchronous client, store and Redis calls (the WSGI shell)."""

    def __init__(self, shell: ShellSupport, client: OIDCClient) -> None:
        self.shell = shell
        self.client = client
        shell.io = self  # the shell's checks in code (ShellAuthorizer) go through these too

    def metadata(self) -> Any:
        return self.client.metadata()

    def keys(self, kid: str | None, alg: str) -> Any:
        provider = self.client.provider
        return provider.cached_keys_for(kid, alg) or provider.keys_for(self.client.http, kid, alg)

    def flow(self, flow: Flow[Any], state: AdapterState, timeout: float | None) -> Any:
        return self.client.run_flow(flow, state, total_timeout=timeout)

    def refresh(self, step: NeedRefresh, state: AdapterState) -> Any:
        fetch = self.shell.refresh_once(step.key, lambda: self.client.run_flow(step.flow, state))
        return self.shell.refreshes.run(step.key, fetch, wait=step.wait)

    def introspection(self, step: NeedIntrospection, state: AdapterState) -> Any:
        return self.shell.introspections.run(
            step.key, lambda: self.client.run_flow(step.flow, state)
        )

    def store(self, step: NeedStore) -> Any:
        return perform_store(self.shell.store, step)

    def shared(self, step: NeedShared) -> Any:
        return perform_shared(self.shell.registry, step)


class AsyncSteps:
    """:class:`StepIO` with the asynchronous client, store and Redis calls (the ASGI shell)."""

    def __init__(self, shell: ShellSupport, client: AsyncOIDCClient) -> None:
        self.shell = shell
        self.client = client
        shell.io = self  # the shell's checks in code (ShellAuthorizer) go through these too

    async def metadata(self) -> Any:
        return await self.client.metadata()

    async def keys(self, kid: str | None, alg: str) -> Any:
        provider = self.client.provider
        cached = provider.cached_keys_for(kid, alg)
        return cached or await provider.keys_for_async(self.client.http, kid, alg)

    async def flow(self, flow: Flow[Any], state: AdapterState, timeout: float | None) -> Any:
        return await self.client.run_flow(flow, state, total_timeout=timeout)

    async def refresh(self, step: NeedRefresh, state: AdapterState) -> Any:
        fetch = self.shell.refresh_once_async(
            step.key, lambda: self.client.run_flow(step.flow, state)
        )
        return await self.shell.refreshes.run_async(step.key, fetch, wait=step.wait)

    async def introspection(self, step: NeedIntrospection, state: AdapterState) -> Any:
        return await self.shell.introspections.run_async(
            step.key, lambda: self.client.run_flow(step.flow, state)
        )

    async def store(self, step: NeedStore) -> Any:
        return await perform_store_async(self.shell.store, step)

    async def shared(self, step: NeedShared) -> Any:
        return await perform_shared_async(self.shell.registry, step)


class ShellAuthorizer:
    """The shell's side of :class:`~adapter.web._steps.Authorizer`, one per state (its core
    hands it to the identities it makes): ``identity.has_permission("Bank Account#view")``
    runs the core's policy enforcer's check (:meth:`PolicyEnforcer.check`) through this
    shell's steps for that state, so it shares the grants the middleware's enforcement
    remembers and its single flight. A WSGI shell's answers a bool, an ASGI shell's an
    awaitable of one; the identity server unreachable raises
    :class:`~adapter.errors.ProviderError` (never a yes)."""

    def __init__(self, state: AdapterState, io: SyncSteps | AsyncSteps) -> None:
        self.state = state
        self.io = io
        self.enforcer: PolicyEnforcer | None = None  # the state's core's, once it is built

    def has_permission(self, identity: Identity, permission: str) -> bool | Awaitable[bool]:
        wanted = parse_permission(permission)  # malformed: ValueError naming the form
        enforcer = self.enforcer
        if enforcer is None:
            raise enforcer_missing(permission)
        check = enforcer.check(identity, wanted)  # it tells a session from a bearer token
        state, io = self.state, self.io
        if isinstance(io, AsyncSteps):
            return _checked_async(check, lambda step: perform(step, state, io))
        return _checked(check, lambda step: perform(step, state, io))


Checking = Generator[Step, Any, bool]


def _checked(check: Checking, run: Callable[[Step], Any]) -> bool:
    """``check`` driven as the core's handlings are (a step's failure thrown back in)."""
    return bool(drive(cast(Handling, check), run))


async def _checked_async(check: Checking, run: Callable[[Step], Awaitable[Any]]) -> bool:
    return bool(await drive_async(cast(Handling, check), run))


def perform_store(store: SessionStore, step: NeedStore) -> Any:
    """Run a store step with the synchronous methods (the WSGI shell)."""
    match step.op:
        case "load":
            return store.load(step.sid)
        case "delete":
            return store.delete(step.sid)
        case "replace":
            assert step.data is not None
            return store.replace(step.sid, step.data, step.ttl)
        case "save":
            assert step.data is not None
            return store.save(step.sid, step.data, step.ttl, step.owner)
        case unknown:
            assert_never(unknown)


def perform_shared(registry: RedisRegistry | None, step: NeedShared) -> Any:
    """Run a sharing step with the synchronous client (the WSGI shell)."""
    assert registry is not None, "the core asks only when redis-url is configured"
    return _shared_answer(step, registry.perform(step.op, **_shared_args(step)))


async def perform_shared_async(registry: RedisRegistry | None, step: NeedShared) -> Any:
    """Run a sharing step with the asynchronous client (the ASGI shell)."""
    assert registry is not None, "the core asks only when redis-url is configured"
    return _shared_answer(step, await registry.perform_async(step.op, **_shared_args(step)))


def _shared_args(step: NeedShared) -> dict[str, Any]:
    args = {"sid": step.sid, "at": step.at, "until": step.until, "idp_sid": step.idp_sid}
    args.update({"sub": step.sub, "jti": step.jti, "jti_until": step.jti_until})
    args.update({"app": step.app, "purge": step.purge, "front": step.front})
    return args


@functools.lru_cache(maxsize=1024)  # every tenant's, on one Redis, for every event
def _scope(issuer: str, client_id: str) -> str:
    """:func:`app_scope`, once per configuration (asked for every event heard)."""
    return app_scope(issuer, client_id)


def _session_names(outcome: Proceed) -> list[str]:
    """A remembered session's names at the identity server (its ID token's sid and sub)."""
    claims = outcome.identity.claims if outcome.identity is not None else {}
    return server_names(claims.get("sid"), claims.get("sub"))


def _shared_answer(step: NeedShared, answer: Any) -> Any:
    if step.op != "check":
        return answer
    ended, by_sid, sub_at = answer
    return SharedRecords(ended=ended, logged_out_by_sid=by_sid, user_logged_out_at=sub_at)


async def perform_store_async(store: SessionStore, step: NeedStore) -> Any:
    """Run a store step with the asynchronous methods (the ASGI shell)."""
    match step.op:
        case "load":
            return await store.load_async(step.sid)
        case "delete":
            return await store.delete_async(step.sid)
        case "replace":
            assert step.data is not None
            return await store.replace_async(step.sid, step.data, step.ttl)
        case "save":
            assert step.data is not None
            return await store.save_async(step.sid, step.data, step.ttl, step.owner)
        case unknown:
            assert_never(unknown)


class RedisRegistries:
    """The Redis registries of one middleware's shells (its tenants'): one per Redis URL,
    prefix and CA certificates, with its connection pools and one subscriber per process, so
    that 200 tenants on one Redis hold one pool and one subscription, not 200."""

    def __init__(self) -> None:
        self._shared: dict[tuple[str, str, str | None], SharedRegistry] = {}
        self._lock = threading.Lock()

    def shared(self, config: AdapterConfig) -> SharedRegistry | None:
        """The registry for ``config``'s ``redis-url`` (``None`` without one): made at the
        first configuration that names it (``rediss://`` trusts what the server calls trust:
        the truststore's CA certificates)."""
        web = config.web
        if web.redis_url is None:
            return None
        ca_pem = None
        if config.truststore is not None:
            from adapter.protocol._truststore import read_truststore

            store = read_truststore(
                config.truststore, config.truststore_password, config.truststore_type
            )
            ca_pem = store.pem()
        url = web.redis_url.reveal()
        key = (url, web.redis_prefix, ca_pem)
        with self._lock:
            shared = self._shared.get(key)
            if shared is None:
                from adapter.stores.redis import RedisRegistry

                registry = RedisRegistry(url, web.redis_prefix, ca_pem=ca_pem)
                shared = self._shared[key] = SharedRegistry(registry)
            return shared


class SharedRegistry:
    """One Redis registry, its subscriber (one per process), and the shells it tells every
    event and every change of the subscription (each skips other apps' events).

    Shells are held weakly (as the subscriber holds this): a middleware dropped without
    ``close`` lets its subscriber end by itself."""

    def __init__(self, registry: RedisRegistry) -> None:
        self.registry = registry
        self.subscriber: Subscriber | None = None
        self._shells: weakref.WeakSet[ShellSupport] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._live = False  # the subscription as last reported in this process

    def add(self, shell: ShellSupport) -> None:
        """``shell`` hears events from now on (a newcomer has missed nothing it knew)."""
        with self._lock:
            self._shells.add(shell)
            if self._pid == os.getpid():
                shell.live = self._live

    def ensure_subscriber(self) -> None:
        """One subscriber thread per process (a forked worker starts its own)."""
        if self._pid == os.getpid():
            return
        with self._lock:  # a first burst of requests starts one, not several
            if self._pid == os.getpid():
                return
            from adapter.stores.redis import Subscriber

            self._pid = os.getpid()
            self._live = False
            for shell in self._shells:
                shell.live = False
            self.subscriber = Subscriber(self.registry, self._event, self._set_live)
            self.subscriber.start()

    def _event(self, event: dict[str, Any]) -> None:
        with self._lock:  # a set is not to be read while another thread adds to it
            shells = list(self._shells)
        for shell in shells:  # one tenant's trouble with an event is no other's
            try:
                shell._apply_event(event)
            except Exception:
                log.warning("a session event was skipped for one tenant (it reads afresh)")
                shell._set_live(False)  # it may have missed what the event said
                shell._set_live(self._live)

    def _set_live(self, live: bool) -> None:
        with self._lock:
            self._live = live
            shells = list(self._shells)
        for shell in shells:
            shell._set_live(live)

    def release(self, shell: ShellSupport) -> None:
        """``shell`` is closed: it hears nothing more (so it remembers nothing); the last one
        stops the subscriber and the pending ends."""
        with self._lock:
            if shell not in self._shells:
                return  # closed before
            self._shells.discard(shell)
            last, subscriber = not self._shells, self.subscriber
        if last:
            if subscriber is not None:
                subscriber.stop()
                subscriber.thread.join(timeout=3)  # it checks every second
            self.registry.pending.stop()
        shell._set_live(False)


def _warn_loosened(config: AdapterConfig) -> None:
    """Once at start-up: the settings that loosen a default, each with what it costs."""
    if not config.web.session_secrets and not config.bearer_only:  # bearer-only: no sessions
        log.warning(
            "no session-secret configured: sessions use a random key and end when this "
            "process restarts (and are not shared between worker processes)"
        )
    if not config.verify_token_audience:
        log.warning(
            "verify-token-audience = false: bearer tokens issued for any client or API of the "
            "realm are accepted here; prefer an audience mapper at the server"
        )
    dropped = secure_over_http(config)
    if dropped is not None:
        log.warning("%s", dropped)


def _note_guarded_public_paths(config: AdapterConfig) -> None:
    """Each ``[[access]]`` rule inside a public path, when a configuration is taken into use:
    there the rule wins (before, such a path was served anonymously), which an app with a
    catch-all rule notices as a 401 on a page it meant to be public."""
    for rule, public in public_overlaps(config.web.access_rules, config.web.public_paths):
        log.warning(
            "[[access]] %s lies in public path %s: the rule wins there (sign-in and the rule "
            "are required); narrow the rule or the public path if that page should be open",
            rule.describe(),
            public,
        )


class StateHolder(Protocol):
    """The interface of the clients that :class:`ShellSupport` relies on."""

    state: AdapterState

    def swap(self, state: AdapterState) -> None: ...


def refuse_second_middleware(app: Any) -> None:
    """Refuse to put an OIDC middleware around an app that has one already: the outer one
    would answer the sign-in, the inner one would not know the session and send the browser
    back to the identity server, round and round (``TooManyRedirects`` in a test)."""
    found = _middleware_inside(app)
    if found is not None:
        raise ConfigError(
            f"{found} has the OIDC middleware already; a second one around it would make every "
            "sign-in loop: wrap the app once. In tests, build the app with the test issuer's "
            "client instead (OIDC(app, config=issuer.config(...), http=issuer.async_http()), "
            "or http=issuer.http() for WSGI) rather than issuer.asgi(app)/wsgi(app): "
            "docs/testing.md"
        )


def _middleware_inside(app: Any) -> str | None:
    """What says ``app`` is behind an OIDC middleware already, or None."""
    if isinstance(getattr(app, "shell", None), ShellSupport):
        return "this app (an OIDCMiddleware/OIDCWSGIMiddleware)"
    if isinstance(getattr(getattr(app, "wsgi_app", None), "shell", None), ShellSupport):
        return "this Flask app (OIDC(app, ...) or oidc.init_app(app))"
    if getattr(getattr(app, "state", None), "oidc", None) is not None:
        return "this FastAPI app (adapter.integrations.fastapi.OIDC(app, ...))"
    for layer in getattr(app, "user_middleware", None) or ():
        cls = getattr(layer, "cls", None)
        if getattr(cls, "__module__", "") == "adapter.asgi":
            return "this Starlette app (Middleware(OIDCMiddleware, ...))"
    return None
