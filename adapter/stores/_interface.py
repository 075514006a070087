"""The store interface (:class:`SessionStore`) and whom a session belongs to
(:class:`SessionOwner`): apart from :mod:`adapter.stores`, which re-exports them, so that the
stores themselves can name them without importing their own package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


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
