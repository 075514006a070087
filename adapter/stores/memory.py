"""Server-side sessions in this process: for one process (and tests), or sticky sessions."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapter.stores._interface import SessionOwner


class MemoryStore:
    """Server-side sessions in this process (bounded in count and bytes, least recently used
    out).

    The cookie then carries only the sealed session id. Sessions are lost on restart and are
    not shared between worker processes: for one process (and tests), or behind sticky sessions.
    """

    def __init__(self, max_sessions: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self._sessions: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def load(self, sid: str) -> dict[str, Any] | None:
        """The session's data, or ``None``."""
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                return None
            self._sessions.move_to_end(sid)
            return entry[0]

    def save(
        self, sid: str, data: dict[str, Any], ttl: float = 0, owner: SessionOwner | None = None
    ) -> None:
        """Store the session (``ttl`` is the store's concern: sessions here end with the
        process, and the cookie's own expiry bounds them; ``owner`` is not indexed here: a
        back-channel logout refuses these sessions, and they leave with the process or the
        least recently used)."""
        with self._lock:
            self._put(sid, data)

    def replace(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        """Save only if the session still exists (a refresh that lands after a logout must not
        bring the session back); ``False`` when it is gone."""
        with self._lock:
            if sid not in self._sessions:
                return False
            self._put(sid, data)
            return True

    def delete(self, sid: str) -> None:
        with self._lock:
            entry = self._sessions.pop(sid, None)
            if entry is not None:
                self._bytes -= entry[1]

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def size(self) -> int:
        """The estimated bytes held."""
        return self._bytes

    def _put(self, sid: str, data: dict[str, Any]) -> None:
        old = self._sessions.pop(sid, None)
        if old is not None:
            self._bytes -= old[1]
        size = _estimated_size(data)
        self._sessions[sid] = (data, size)
        self._bytes += size
        while len(self._sessions) > 1 and (
            len(self._sessions) > self.max_sessions or self._bytes > self.max_bytes
        ):
            _, (_, dropped) = self._sessions.popitem(last=False)
            self._bytes -= dropped

    async def load_async(self, sid: str) -> dict[str, Any] | None:
        return self.load(sid)

    async def save_async(
        self, sid: str, data: dict[str, Any], ttl: float = 0, owner: SessionOwner | None = None
    ) -> None:
        self.save(sid, data, ttl, owner)

    async def replace_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool:
        return self.replace(sid, data, ttl)

    async def delete_async(self, sid: str) -> None:
        self.delete(sid)


def _estimated_size(data: Mapping[str, Any]) -> int:
    """About what a session holds in memory: its tokens and claims (saves are rare: login and
    refresh, so a repr is affordable)."""
    tokens = sum(len(v) for v in data.values() if isinstance(v, str))
    return 2 * tokens + 2 * len(repr(data.get("claims"))) + 512
