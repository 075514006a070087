"""Remembered decisions: a session request seen before costs a dictionary look-up.

A cookie session is decided once (decrypt, inflate, parse, build the identity) and then
remembered by the value of its session cookie (never the whole ``Cookie`` header: junk cookies
beside it must not make new entries) until its token needs a refresh, the session ends, or a
minute passes. The requests of one session share one outcome, and so one identity; the cache is
bounded in bytes and drops expired entries as it inserts, so no request pattern grows it beyond
its budget. Every entry knows its session id: a logout, a refresh (new roles) or a revocation
forgets all of that session's entries at once.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_DECISION_BYTES = 8 * 1024 * 1024  # the whole cache, estimated
_ENTRY_OVERHEAD = 400  # bytes per entry beyond the key: tuple, dict slot, outcome share
_EXPIRED_SWEEP = 8  # expired entries dropped per insert (amortised, never a full scan)


class DecisionCache(Generic[T]):
    """Outcomes by session-cookie value, with their session id and a deadline."""

    def __init__(self, max_bytes: int = MAX_DECISION_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[str, tuple[float, str, int]] = {}  # value -> (deadline, sid, size)
        self._sessions: dict[str, tuple[T, set[str]]] = {}  # sid -> (outcome, its values)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, value: str) -> T | None:
        """The remembered outcome for this cookie value while it holds (the hot path)."""
        entry = self._entries.get(value)
        if entry is None:
            return None
        if time.time() >= entry[0]:
            with self._lock:
                if self._entries.get(value) is entry:
                    self._drop(value)
            return None
        shared = self._sessions.get(entry[1])
        return shared[0] if shared is not None else None

    def put(self, value: str, sid: str, outcome: T, deadline: float, size: int) -> None:
        """Remember ``outcome`` for ``value`` until ``deadline``; ``size`` estimates its bytes
        (the identity's claims and tokens)."""
        cost = len(value) + size + _ENTRY_OVERHEAD
        if cost > self.max_bytes // 16:
            return  # one huge session is not worth a sixteenth of the budget: the full path works
        with self._lock:
            if value in self._entries:
                self._drop(value)
            self._sweep(time.time())
            while self._entries and self._bytes + cost > self.max_bytes:
                self._drop(next(iter(self._entries)))  # oldest first
            self._entries[value] = (deadline, sid, cost)
            values = self._sessions[sid][1] if sid in self._sessions else set()
            values.add(value)
            self._sessions[sid] = (outcome, values)  # the newest outcome of a session wins
            self._bytes += cost

    def forget_session(self, sid: str) -> None:
        """Drop every entry of session ``sid`` (logout, refresh, revocation)."""
        with self._lock:
            shared = self._sessions.pop(sid, None)
            for value in shared[1] if shared is not None else ():
                entry = self._entries.pop(value, None)
                if entry is not None:
                    self._bytes -= entry[2]

    def clear(self) -> None:
        """Forget everything (a server-side logout whose sessions cannot be told apart here)."""
        with self._lock:
            self._entries.clear()
            self._sessions.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The estimated bytes held."""
        return self._bytes

    def _sweep(self, now: float) -> None:
        oldest = list(itertools.islice(self._entries.items(), _EXPIRED_SWEEP))
        for value, (deadline, _, _) in oldest:
            if deadline <= now:
                self._drop(value)

    def _drop(self, value: str) -> None:
        _, sid, cost = self._entries.pop(value)
        self._bytes -= cost
        shared = self._sessions.get(sid)
        if shared is not None:
            shared[1].discard(value)
            if not shared[1]:
                del self._sessions[sid]
