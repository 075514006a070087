"""Remembered decisions: a session request seen before costs a dictionary look-up.

A cookie session is decided once (decrypt, inflate, parse, build the identity) and then
remembered by the value of its session cookie (never the whole ``Cookie`` header: junk cookies
beside it must not make new entries) until its token needs a refresh, the session ends, or a
minute passes. The requests of one session share one outcome, and so one identity; the cache is
bounded in bytes and drops expired entries as it inserts, so no request pattern grows it beyond
its budget. Every entry knows its session id: a logout, a refresh (new roles) or a revocation
forgets all of that session's entries at once. A cache given ``names`` also knows each session by
the identity server's names for it (its session id and user, :func:`server_names`), so that a
back-channel logout forgets exactly the sessions it names and nothing else.

Entries are found by the value's last characters (a sealed value ends with its AES-GCM tag)
and then compared in full, in place in the Cookie header: hashing a 3 KB cookie on every
request cost more than everything else the hot path does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_DECISION_BYTES = 8 * 1024 * 1024  # the whole cache, estimated
_ENTRY_OVERHEAD = 400  # bytes per entry beyond the key: tuple, dict slot, outcome share
_EXPIRED_SWEEP = 8  # expired entries dropped per insert at most (amortised, never a full scan)
_KEY_BYTES = 32  # the tail of a value that finds its entry (the full value is then compared)


def server_names(idp_sid: object, sub: object) -> list[str]:
    """The names under which a cache given ``names`` finds a session: the identity server's
    session id and user (each only when it is a string)."""
    names = []
    if isinstance(idp_sid, str):
        names.append(f"sid\0{idp_sid}")
    if isinstance(sub, str):
        names.append(f"sub\0{sub}")
    return names


def _raw(value: str | bytes) -> bytes | None:
    """A value as the wire carries it (headers are Latin-1); None if it cannot be one."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return None


class DecisionCache(Generic[T]):
    """Outcomes by session-cookie value, with their session id and a deadline; ``names``
    gives an outcome's :func:`server_names` (then :meth:`forget_named` forgets only those)."""

    def __init__(
        self,
        max_bytes: int = MAX_DECISION_BYTES,
        names: Callable[[T], Iterable[str]] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self._names = names
        # key (the value's tail) -> (deadline, sid, size, the whole value), oldest first. Ordered:
        # a full cache drops its oldest entry on every insert, and a plain dict finds its first
        # key only past every slot deleted before it (measured: twice the insert's time).
        self._entries: OrderedDict[bytes, tuple[float, str, int, bytes]] = OrderedDict()
        self._sessions: dict[str, tuple[T, set[bytes]]] = {}  # sid -> (outcome, its keys)
        self._named: dict[str, set[str]] = {}  # a server name -> the sids it names
        self._names_of: dict[str, tuple[str, ...]] = {}  # sid -> its server names
        self._bytes = 0
        self._lock = threading.Lock()
        # Bumped by every clear: an outcome decided before one (a reload, news that may have
        # been missed) is not remembered after it (``put``'s ``since``).
        self.generation = 0
        # Bumped by a clear for a new configuration (:meth:`renew`): a core built for an older
        # one remembers nothing more (it compares the epoch it was built in).
        self.epoch = 0

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

    def put(
        self,
        value: str | bytes,
        sid: str,
        outcome: T,
        deadline: float,
        size: int,
        since: int | None = None,
    ) -> None:
        """Remember ``outcome`` for ``value`` until ``deadline``; ``size`` estimates its bytes
        (the identity's claims and tokens). Another value with the same tail replaces it.
        ``since``: the :attr:`generation` when the outcome's deciding began (nothing is
        remembered when the cache was cleared since)."""
        raw = _raw(value)
        cost = len(value) + size + _ENTRY_OVERHEAD
        if raw is None or cost > self.max_bytes // 16:
            return  # one huge session is not worth a sixteenth of the budget: the full path works
        key = raw[-_KEY_BYTES:]
        with self._lock:
            if since is not None and since != self.generation:
                return  # decided before a clear: under another configuration, or without news
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
            # A session's server names never change: asked while it has none, here, after
            # every drop above (one of them may have been its last key, and its names with it).
            # (``names`` runs under the lock: it must not call back into this cache.)
            if self._names is not None and sid not in self._names_of:
                names = tuple(self._names(outcome))
                if names:
                    self._names_of[sid] = names
                    for name in names:
                        self._named.setdefault(name, set()).add(sid)

    def forget_session(self, sid: str) -> None:
        """Drop every entry of session ``sid`` (logout, refresh, revocation)."""
        with self._lock:
            self._forget(sid)

    def forget_named(self, names: Iterable[str]) -> None:
        """Drop every session known by one of these :func:`server_names` (a back-channel
        logout); a cache without ``names`` cannot tell them apart and forgets everything."""
        if self._names is None:
            self.clear()
            return
        with self._lock:
            for sid in {sid for name in names for sid in self._named.get(name, ())}:
                self._forget(sid)

    def renew(self) -> None:
        """Forget everything: a new configuration (its core takes the new :attr:`epoch`)."""
        with self._lock:
            self.epoch += 1
        self.clear()

    def clear(self) -> None:
        """Forget everything (the configuration changed, or news may have been missed)."""
        with self._lock:
            self._entries.clear()
            self._sessions.clear()
            self._named.clear()
            self._names_of.clear()
            self._bytes = 0
            self.generation += 1

    def _forget(self, sid: str) -> None:
        shared = self._sessions.pop(sid, None)
        for key in shared[1] if shared is not None else ():
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry[2]
        self._unname(sid)

    def _unname(self, sid: str) -> None:
        for name in self._names_of.pop(sid, ()):
            sids = self._named.get(name)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._named[name]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The estimated bytes held."""
        return self._bytes

    def _sweep(self, now: float) -> None:
        """Drop expired entries, oldest first, up to the first that still holds: every entry
        holds a few minutes at most, so an expired one behind a younger one waits no longer."""
        entries = self._entries
        for _ in range(_EXPIRED_SWEEP):
            key = next(iter(entries), None)
            if key is None or entries[key][0] > now:
                return
            self._drop(key)

    def _drop(self, key: bytes) -> None:
        _, sid, cost, _ = self._entries.pop(key)
        self._bytes -= cost
        shared = self._sessions.get(sid)
        if shared is not None:
            shared[1].discard(key)
            if not shared[1]:
                del self._sessions[sid]
                self._unname(sid)
