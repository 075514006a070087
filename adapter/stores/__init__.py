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

from adapter.stores._interface import SessionOwner, SessionStore
from adapter.stores.memory import MemoryStore

__all__ = ["MemoryStore", "SessionOwner", "SessionStore"]
