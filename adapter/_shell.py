"""What the ASGI and WSGI shells share: the current state's core, reloads, the status.

Kept out of both shells so that neither holds anything but translation: the core for a state
is built once per state (and so per reload), the memory session store and the refresh
coordinator outlive reloads, and the reloader watches the configuration's files.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Protocol

from adapter._refresh import RefreshCoordinator
from adapter.config import AdapterConfig
from adapter.core import WebCore
from adapter.errors import ConfigError
from adapter.reload import Reloader, ReloadStatus
from adapter.session import MemoryStore
from adapter.state import AdapterState

log = logging.getLogger("adapter")


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
        # Without a session-secret: one random key for the life of the process, so a reload
        # does not log everybody out (a restart still does, and workers do not share it).
        self.random_session_key = secrets.token_bytes(32)
        if watch is not None and watch <= 0:
            raise ConfigError("watch: the polling interval must be more than 0 seconds")
        self.refreshes = RefreshCoordinator()
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
            if not state.config.web.session_secrets and last is None:
                log.warning(
                    "no session-secret configured: sessions use a random key and end when this "
                    "process restarts (and are not shared between worker processes)"
                )
            core = state.derived["core"] = WebCore(
                state.config, state.ring, self.memory_store, self.random_session_key
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


class StateHolder(Protocol):
    """The interface of the clients that :class:`ShellSupport` relies on."""

    state: AdapterState

    def swap(self, state: AdapterState) -> None: ...
