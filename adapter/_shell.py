"""What the ASGI and WSGI shells share: the current state's core, reloads, the status.

Kept out of both shells so that neither holds anything but translation: the core for a state
is built once per state (and so per reload), the memory session store and the refresh
coordinator outlive reloads, and the reloader watches the configuration's files.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Protocol

from adapter._single_flight import SingleFlight
from adapter.config import AdapterConfig
from adapter.core import NeedStore, WebCore
from adapter.errors import ConfigError
from adapter.reload import Reloader, ReloadStatus
from adapter.session import EndedSessions, ServerLogouts
from adapter.state import AdapterState
from adapter.stores import MemoryStore, SessionStore
from adapter.tokens import TokenSet

log = logging.getLogger("adapter")
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
    ) -> None:
        self._holder = current
        self._last: tuple[AdapterState, WebCore] | None = None  # the core of the latest state
        self.memory_store = MemoryStore()
        # The server-side store, built once (like the HTTP client): a reload keeps it.
        self.store: SessionStore = open_store(current.state.config, self.memory_store)
        self.ended_sessions = EndedSessions()  # logouts outlive reloads, like the memory store
        self.server_logouts = ServerLogouts()
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
            self.reloader = Reloader(source, lambda: current.state, current.swap)
        elif watch is not None:
            raise ConfigError("watch: needs the configuration as a file path, not an object")
        self.watch = watch

    def core(self) -> tuple[AdapterState, WebCore]:
        """The current state and its core (built on first use of that state)."""
        last = self._last
        if last is not None and last[0] is self._holder.state:
            return last
        state = self._holder.state
        core = state.derived.get("core")
        if core is None:
            if last is None:
                _warn_loosened(state.config)
            core = state.derived["core"] = WebCore(
                state.config,
                state.ring,
                self.random_session_key,
                self.ended_sessions,
                self.server_logouts,
            )
        self._last = (state, core)
        return state, core

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


def open_store(config: AdapterConfig, memory: MemoryStore) -> SessionStore:
    """The server-side store the configuration names (memory also for cookie sessions: the
    core asks nothing of it then)."""
    if config.web.session_store == "redis" and config.web.redis_url is not None:
        from adapter.stores.redis import RedisStore

        return RedisStore(config.web.redis_url.reveal(), config.web.redis_prefix)
    return memory


def perform_store(store: SessionStore, step: NeedStore) -> Any:
    """Run a store step with the synchronous methods (the WSGI shell)."""
    if step.op == "load":
        return store.load(step.sid)
    if step.op == "delete":
        return store.delete(step.sid)
    assert step.data is not None
    if step.op == "replace":
        return store.replace(step.sid, step.data, step.ttl)
    return store.save(step.sid, step.data, step.ttl)


async def perform_store_async(store: SessionStore, step: NeedStore) -> Any:
    """Run a store step with the asynchronous methods (the ASGI shell)."""
    if step.op == "load":
        return await store.load_async(step.sid)
    if step.op == "delete":
        return await store.delete_async(step.sid)
    assert step.data is not None
    if step.op == "replace":
        return await store.replace_async(step.sid, step.data, step.ttl)
    return await store.save_async(step.sid, step.data, step.ttl)


def _warn_loosened(config: AdapterConfig) -> None:
    """Once at start-up: the settings that loosen a default, each with what it costs."""
    if not config.web.session_secrets:
        log.warning(
            "no session-secret configured: sessions use a random key and end when this "
            "process restarts (and are not shared between worker processes)"
        )
    if not config.verify_token_audience:
        log.warning(
            "verify-token-audience = false: bearer tokens issued for any client or API of the "
            "realm are accepted here; prefer an audience mapper at the server"
        )


class StateHolder(Protocol):
    """The interface of the clients that :class:`ShellSupport` relies on."""

    state: AdapterState

    def swap(self, state: AdapterState) -> None: ...
