"""Where server-side sessions live: one small interface, a memory store and a Redis store.

The core never talks to a store: it yields :class:`~adapter.web._steps.NeedStore` steps and the
shells perform them, the WSGI shell with the synchronous methods and the ASGI shell with the
``*_async`` ones (so a Redis round trip never blocks an event loop). ``ttl`` is how long the
session may still live (its ``session-max-age`` left); a store that expires data uses it.
``owner`` (given when a session is first saved) names whom the session belongs to at the identity
server: a store shared by processes indexes it by that, so that a back-channel logout can delete
the sessions it names (:meth:`adapter.stores.redis.RedisRegistry.perform`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from adapter.stores.memory import MemoryStore

__all__ = ["MemoryStore", "SessionOwner", "SessionStore"]


@dataclass(frozen=True)
class SessionOwner:
    """Whom a server-side session belongs to: ``app`` (its issuer and client, as the short
    scope every shared record carries), the identity server's session ``idp_sid`` and the user
    ``sub`` (either may be missing)."""

    app: str
    idp_sid: str | None = None
    sub: str | None = None


class SessionStore(Protocol):
    """What every server-side store offers, in both flavours."""

    def load(self, sid: str) -> dict[str, Any] | None: ...

    def save(
        self, sid: str, data: dict[str, Any], ttl: float = 0, owner: SessionOwner | None = None
    ) -> None: ...

    def replace(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool: ...

    def delete(self, sid: str) -> None: ...

    async def load_async(self, sid: str) -> dict[str, Any] | None: ...

    async def save_async(
        self, sid: str, data: dict[str, Any], ttl: float = 0, owner: SessionOwner | None = None
    ) -> None: ...

    async def replace_async(self, sid: str, data: dict[str, Any], ttl: float = 0) -> bool: ...

    async def delete_async(self, sid: str) -> None: ...
