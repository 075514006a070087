"""One token refresh per session in flight, shared by the concurrent requests of that session.

Two requests with the same session cookie may both find the access token about to expire; if
both refreshed, a server that rotates refresh tokens would refuse the second and end the
session. Here the first refreshes and the others wait, then reuse its result for a short while.
Locks are striped by session id: a fixed set, so nothing grows with the number of sessions.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from adapter._locks import LoopLocks
from adapter.tokens import TokenSet

_REUSE_SECONDS = 30.0
_MAX_RESULTS = 10_000
_STRIPES = 64


class RefreshCoordinator:
    """Per-session single flight for refreshes (sync and async callers)."""

    def __init__(self) -> None:
        self._results: OrderedDict[tuple[str, str], tuple[float, TokenSet]] = OrderedDict()
        self._guard = threading.Lock()
        self._thread_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._loop_locks = [LoopLocks() for _ in range(_STRIPES)]

    @staticmethod
    def _stripe(sid: str) -> int:
        return zlib.crc32(sid.encode()) % _STRIPES

    def _recent(self, key: tuple[str, str]) -> TokenSet | None:
        with self._guard:
            entry = self._results.get(key)
        if entry is not None and time.monotonic() - entry[0] < _REUSE_SECONDS:
            return entry[1]
        return None

    def _remember(self, key: tuple[str, str], tokens: TokenSet) -> TokenSet:
        with self._guard:
            self._results[key] = (time.monotonic(), tokens)
            while len(self._results) > _MAX_RESULTS:
                self._results.popitem(last=False)
        return tokens

    def refresh(self, sid: str, refresh_token: str, fetch: Callable[[], TokenSet]) -> TokenSet:
        """``fetch()`` once for this session's refresh token, whatever the number of callers."""
        key = (sid, refresh_token)
        with self._thread_locks[self._stripe(sid)]:
            return self._recent(key) or self._remember(key, fetch())

    async def refresh_async(
        self, sid: str, refresh_token: str, fetch: Callable[[], Awaitable[TokenSet]]
    ) -> TokenSet:
        """``await fetch()`` once for this session's refresh token."""
        key = (sid, refresh_token)
        async with self._loop_locks[self._stripe(sid)].get():
            return self._recent(key) or self._remember(key, await fetch())
