"""An asyncio lock per event loop, for objects shared across loops (tests, threads, CLI)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


class LoopLocks:
    """Hands out one ``asyncio.Lock`` per running loop; an asyncio.Lock serves one loop only."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> asyncio.Lock:
        """The lock of the running loop."""
        import asyncio  # loaded by the running loop already; a WSGI app never imports it

        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock
