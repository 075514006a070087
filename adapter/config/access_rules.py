"""The ``[[access]]`` rules and the idioms' requirements as values: what a route needs.

They are configuration (read with the rest of it, swapped in with a reload); the decision made
with them lives in :mod:`adapter.web._access`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    """What an identity must hold: every role, client role and scope listed, and at least one
    of ``any_role`` when it is given (realm or client roles both count for it)."""

    roles: frozenset[str] = frozenset()
    client_roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    any_role: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        any_role: Iterable[str] = (),
    ) -> Requirement:
        """Built from any iterables; a single string counts as one name, not as letters."""
        return cls(_names(roles), _names(client_roles), _names(scopes), _names(any_role))


@dataclass(frozen=True)
class AccessRule:
    """One ``[[access]]`` rule: a path (exact, or a prefix ending in ``/*``), the methods it
    covers (all when empty) and what it requires."""

    path: str
    methods: frozenset[str]
    requirement: Requirement

    def matches(self, path: str, method: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.path.endswith("/*"):
            base = self.path[:-2]
            return path == base or path.startswith(base + "/")
        return path == self.path


def _names(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        return frozenset({values})
    return frozenset(values)
