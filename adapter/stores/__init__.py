"""Where server-side sessions live: one small interface, a memory store and a Redis store.

The core never talks to a store: it yields :class:`~adapter.web._steps.NeedStore` steps and the
shells perform them, the WSGI shell with the synchronous methods and the ASGI shell with the
``*_async`` ones (so a Redis round trip never blocks an event loop). ``ttl`` is how long the
session may still live (its ``session-max-age`` left); a store that expires data uses it.
"""

from __future__ import annotations

from typing import Any, Protocol

from adapter.stores.memory import MemoryStore

__all__ = ["MemoryStore", "SessionStore"]


class SessionStore(Protocol):
    """What every server-side store offers, in both flavours."""

    def load(self, sid: str) -> dict[str, Any] | None: ...

    def save(self, sid: str, data: dict[str, Any], ttl: float = 0) -> None: ...

    def replace(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool: ...

    def delete(self, sid: str) -> None: ...

    async def load_async(self, sid: str) -> dict[str, Any] | None: ...

    async def save_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> None: ...

    async def replace_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool: ...

    async def delete_async(self, sid: str) -> None: ...
