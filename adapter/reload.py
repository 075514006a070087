"""Reload: build a new state from the files, validate it, swap it in; or change nothing.

Triggers: a call (:meth:`Reloader.reload`), a file watcher that polls the configuration file
and every file it names (keystores, certificates, password files), and ``SIGHUP`` (opt-in). A
reload that fails leaves the old state serving, logs one line naming the file and field, and
shows in :attr:`Reloader.status`; the next good file is applied. Each worker process of a
multi-worker server reloads on its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapter import _observe
from adapter.config import AdapterConfig
from adapter.errors import AdapterError, ConfigWarning
from adapter.state import AdapterState

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[str, int, int, int, int], ...]  # path, mtime, size, inode, ctime


@dataclass(frozen=True)
class ReloadStatus:
    """What an app can expose about its configuration: when it loaded, what went wrong."""

    loaded_at: float
    last_attempt: float | None = None
    last_error: str | None = None
    reloads: int = 0
    failures: int = 0
    keys: list[dict[str, str]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()  # the serving file's unknown fields (typos), from its reload

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no secret is part of the status); times in ISO 8601 (UTC), as an
        operator reads them and a monitoring system parses them."""
        return {
            "loaded_at": _iso(self.loaded_at),
            "last_attempt": _iso(self.last_attempt),
            "last_error": self.last_error,
            "reloads": self.reloads,
            "failures": self.failures,
            "keys": self.keys,
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON, e.g. for a health endpoint."""
        return json.dumps(self.to_dict(), indent=2)


def _load_noting_warnings(
    source: Path, previous: AdapterState, load: Callable[[], AdapterConfig] | None = None
) -> tuple[AdapterState, tuple[str, ...]]:
    """The new state, and the configuration's warnings (unknown fields: a typo, mostly) said on
    this logger with the file's name, rather than as a Python warning that names the library's
    own file; any other warning raised meanwhile is passed on as it came."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = AdapterState.load(load() if load is not None else source, previous=previous)
    found: list[str] = []
    for item in caught:
        if issubclass(item.category, ConfigWarning):
            found.append(str(item.message))
            log.warning("configuration %s reloaded with a warning: %s", source, item.message)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return state, tuple(dict.fromkeys(found))


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


class Reloader:
    """Keeps the states of one configuration file fresh for the objects that use them.

    ``current`` returns the state in use; ``swap`` installs a new one (one assignment).
    ``load`` reads the configuration when ``source`` alone does not say it all (a tenant's:
    its file over a tenants file's shared settings).
    """

    def __init__(
        self,
        source: Path,
        current: Callable[[], AdapterState],
        swap: Callable[[AdapterState], None],
        load: Callable[[], AdapterConfig] | None = None,
    ) -> None:
        self.source = source
        self._load = load
        self._current = current
        self._swap = swap
        self._lock = threading.Lock()
        state = current()
        self.status = ReloadStatus(loaded_at=state.loaded_at, keys=state.key_states())
        self._fingerprint = fingerprint(state)
        self._stop = threading.Event()

    def reload(self) -> bool:
        """Load the files again; swap on success. Never raises for a bad file."""
        with self._lock:
            attempt = time.time()
            # Taken before reading: an edit that lands during the load is seen next time.
            before = fingerprint_files(self._watched_after_failure())
            try:
                state, found = _load_noting_warnings(self.source, self._current(), self._load)
            except AdapterError as error:
                self._failed(str(error), attempt)
                self._fingerprint = before
                return False
            except Exception as error:  # a bug must not take the serving state down either
                self._failed(f"unexpected {type(error).__name__}", attempt)
                self._fingerprint = before
                return False
            self._swap(state)
            known = {row[0] for row in before}
            added = tuple(p for p in state.config.watched_files() if str(p) not in known)
            self._fingerprint = before + fingerprint_files(added)
            status = self.status
            self.status = replace(
                status,
                loaded_at=state.loaded_at,
                last_attempt=attempt,
                last_error=None,
                reloads=status.reloads + 1,
                keys=state.key_states(),
                warnings=found,
            )
            log.info("configuration reloaded from %s", self.source)
            _observe.observer.reload(state.config.tenant, True)
            return True

    def _failed(self, message: str, attempt: float) -> None:
        _observe.observer.reload(self._current().config.tenant, False)
        status = self.status
        if message != status.last_error:  # one line per new problem, not per poll
            log.error("reload refused, the previous configuration keeps serving: %s", message)
        self.status = replace(
            status, last_attempt=attempt, last_error=message, failures=status.failures + 1
        )

    def _watched_after_failure(self) -> tuple[Path, ...]:
        # Keep watching what the serving state uses, plus the source (the part being edited).
        return (self.source, *self._current().config.watched_files())

    def refresh_key_states(self) -> None:
        """Update the status's key states (``activate-at`` switches happen without a reload)."""
        # A snapshot replaced whole, so readers never see half an update; skipped while a
        # reload holds the lock (that reload writes the key states itself).
        if self._lock.acquire(blocking=False):
            try:
                self.status = replace(self.status, keys=self._current().key_states())
            finally:
                self._lock.release()

    def changed(self) -> bool:
        """Whether any watched file changed since the last load or attempt."""
        files = tuple(Path(row[0]) for row in self._fingerprint) or (self.source,)
        return fingerprint_files(files) != self._fingerprint

    def poll(self) -> bool:
        """Reload if a watched file changed, or while the last reload failed (the fix may be a
        file the broken configuration named, which is not watched yet); ``True`` on a swap."""
        self.refresh_key_states()
        return (self.changed() or self.status.last_error is not None) and self.reload()

    # -- triggers -----------------------------------------------------------------------------

    def watch_in_thread(self, interval: float) -> threading.Thread:
        """Poll every ``interval`` seconds in a daemon thread (WSGI servers)."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self._poll_safely()

        thread = threading.Thread(target=loop, name="oidc-adapter-reload", daemon=True)
        thread.start()
        return thread

    async def watch(self, interval: float) -> None:
        """Poll every ``interval`` seconds until cancelled (ASGI: a task of the lifespan)."""
        import asyncio  # loaded by the running loop already; a WSGI app never imports it

        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self._poll_safely)  # file reads and parsing off the loop

    def _poll_safely(self) -> None:
        """One poll; nothing it raises may stop the watcher (it would stop silently)."""
        try:
            self.poll()
        except Exception as error:
            log.error(
                "configuration watcher: poll failed (%s); still watching", type(error).__name__
            )

    def stop(self) -> None:
        """Stop a watcher thread."""
        self._stop.set()

    def install_sighup(self) -> None:
        """Reload on ``SIGHUP``. Call from the main thread (Python's rule for signals).

        The handler only puts a token in a queue (reentrant: a second signal arriving inside the
        handler cannot deadlock it); one thread does the reloads, so a burst of signals makes
        one or two reloads, not one thread each. A handler installed before keeps being called.
        """
        import queue  # only with sighup = true: an app that never asks does not import them
        import signal

        wanted: queue.SimpleQueue[None] = queue.SimpleQueue()  # reentrant, unlike Event.set
        previous = signal.getsignal(signal.SIGHUP)

        def handler(signum: int, frame: Any) -> None:
            wanted.put_nowait(None)
            if callable(previous):
                previous(signum, frame)

        def worker() -> None:
            while not self._stop.is_set():
                try:
                    wanted.get(timeout=1.0)
                except queue.Empty:
                    continue
                while not wanted.empty():  # a burst of signals: one reload
                    wanted.get_nowait()
                try:
                    self.reload()
                except Exception as error:
                    log.error("SIGHUP reload failed (%s)", type(error).__name__)

        signal.signal(signal.SIGHUP, handler)  # first: it raises off the main thread
        threading.Thread(target=worker, name="oidc-adapter-sighup", daemon=True).start()


def fingerprint(state: AdapterState) -> Fingerprint:
    """Modification time and size of every file ``state`` was built from."""
    return fingerprint_files(state.config.watched_files())


def fingerprint_files(files: tuple[Path, ...]) -> Fingerprint:
    rows = []
    for path in dict.fromkeys(files):
        try:
            info = path.stat()
        except OSError:
            rows.append((str(path), -1, -1, -1, -1))
        else:
            rows.append((str(path), info.st_mtime_ns, info.st_size, info.st_ino, info.st_ctime_ns))
    return tuple(rows)
