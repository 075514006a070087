"""What the policy enforcer asks for and what the server grants (Keycloak Authorization
Services), as plain values: the identity carries them (``Identity.permissions``), so they load
with it, while the UMA calls that produce them (:mod:`adapter.protocol.uma`) load with the
policy enforcer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    """One ``permission`` parameter: a resource (name or id; ``None``: any resource with the
    scopes) and its scopes (none: the whole resource)."""

    resource: str | None
    scopes: tuple[str, ...] = ()

    def parameter(self) -> str:
        """As Keycloak reads it: ``Resource A#view, delete``, ``Resource A``, ``#view``."""
        if not self.scopes:
            return self.resource or ""
        return f"{self.resource or ''}#{', '.join(self.scopes)}"

    @classmethod
    def parse(cls, text: str) -> Permission:
        """``res#scope1, scope2`` (as ``require(permission=...)`` and the logs write it)."""
        resource, _, scopes = text.partition("#")
        names = tuple(scope.strip() for scope in scopes.split(",") if scope.strip())
        return cls(resource.strip() or None, names)


@dataclass(frozen=True)
class Granted:
    """A permission the server granted: the resource's id and name, the granted scopes."""

    rsid: str
    rsname: str | None
    scopes: tuple[str, ...]
