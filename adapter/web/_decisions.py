"""Remembered decisions: a session request seen before costs a dictionary look-up.

A cookie session is decided once (decrypt, inflate, parse, build the identity) and then
remembered by the value of its session cookie (never the whole ``Cookie`` header: junk cookies
beside it must not make new entries) until its token needs a refresh, the session ends, or a
minute passes. The requests of one session share one outcome, and so one identity; the cache is
bounded in bytes and drops expired entries as it inserts, so no request pattern grows it beyond
its budget. Every entry knows its session id: a logout, a refresh (new roles) or a revocation
forgets all of that session's entries at once.

Entries are found by the value's last characters (a sealed value ends with its AES-GCM tag)
and then compared in full, in place in the Cookie header: hashing a 3 KB cookie on every
request cost more than everything else the hot path does.
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
_KEY_BYTES = 32  # the tail of a value that finds its entry (the full value is then compared)


def _raw(value: str | bytes) -> bytes | None:
    """A value as the wire carries it (headers are Latin-1); None if it cannot be one."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return None


class DecisionCache(Generic[T]):
    """Outcomes by session-cookie value, with their session id and a deadline."""

    def __init__(self, max_bytes: int = MAX_DECISION_BYTES) -> None:
        self.max_bytes = max_bytes
        # key (the value's tail) -> (deadline, sid, size, the whole value)
        self._entries: dict[bytes, tuple[float, str, int, bytes]] = {}
        self._sessions: dict[str, tuple[T, set[bytes]]] = {}  # sid -> (outcome, its keys)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, value: str | bytes) -> T | None:
        """The remembered outcome for this value while it holds."""
        raw = _raw(value)
        return None if raw is None else self.get_in(raw, 0, len(raw))

    def get_in(self, raw: bytes, begin: int, end: int) -> T | None:
        """The remembered outcome for the value ``raw[begin:end]``, compared where it lies (no
        copy of a 3 KB cookie header), while it holds: the hot path of a signed-in request."""
        key = raw[max(begin, end - _KEY_BYTES) : end]
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, sid, _, value = entry
        if len(value) != end - begin or not raw.startswith(value, begin):
            return None
        if time.time() >= deadline:
            with self._lock:
                if self._entries.get(key) is entry:
                    self._drop(key)
            return None
        shared = self._sessions.get(sid)
        return shared[0] if shared is not None else None

    def put(self, value: str | bytes, sid: str, outcome: T, deadline: float, size: int) -> None:
        """Remember ``outcome`` for ``value`` until ``deadline``; ``size`` estimates its bytes
        (the identity's claims and tokens). Another value with the same tail replaces it."""
        raw = _raw(value)
        cost = len(value) + size + _ENTRY_OVERHEAD
        if raw is None or cost > self.max_bytes // 16:
            return  # one huge session is not worth a sixteenth of the budget: the full path works
        key = raw[-_KEY_BYTES:]
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._sweep(time.time())
            while self._entries and self._bytes + cost > self.max_bytes:
                self._drop(next(iter(self._entries)))  # oldest first
            self._entries[key] = (deadline, sid, cost, raw)
            keys = self._sessions[sid][1] if sid in self._sessions else set()
            keys.add(key)
            self._sessions[sid] = (outcome, keys)  # the newest outcome of a session wins
            self._bytes += cost

    def forget_session(self, sid: str) -> None:
        """Drop every entry of session ``sid`` (logout, refresh, revocation)."""
        with self._lock:
            shared = self._sessions.pop(sid, None)
            for key in shared[1] if shared is not None else ():
                entry = self._entries.pop(key, None)
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
        for key, (deadline, _, _, _) in oldest:
            if deadline <= now:
                self._drop(key)

    def _drop(self, key: bytes) -> None:
        _, sid, cost, _ = self._entries.pop(key)
        self._bytes -= cost
        shared = self._sessions.get(sid)
        if shared is not None:
            shared[1].discard(key)
            if not shared[1]:
                del self._sessions[sid]
