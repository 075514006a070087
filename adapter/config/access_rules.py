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


# Method names a rule may list: RFC 9110's, PATCH (RFC 5789) and WebDAV's (RFC 4918, 3253,
# 5323). Anything else is a typo that would leave a door open, and is refused at load.
KNOWN_METHODS = frozenset(
    {
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
    }
)  # fmt: skip


def rule_methods(names: Iterable[str]) -> frozenset[str]:
    """The methods a rule covers, upper case; a rule naming ``GET`` covers ``HEAD`` too (every
    framework runs the GET handler for HEAD). Raises ``ValueError`` naming an unknown method."""
    methods = {name.strip().upper() for name in names}
    unknown = sorted(methods - KNOWN_METHODS)
    if unknown:
        raise ValueError(unknown[0])
    if "GET" in methods:
        methods.add("HEAD")
    return frozenset(methods)


@dataclass(frozen=True)
class AccessRule:
    """One ``[[access]]`` rule: a path (exact, or a prefix ending in ``/*``), the methods it
    covers (all when empty; upper case, see :func:`rule_methods`) and what it requires.

    Methods are compared without regard to case: servers pass ``delete`` on as the client sent
    it, and frameworks (Django) run their DELETE handler for it."""

    path: str
    methods: frozenset[str]
    requirement: Requirement
    dpop: bool = False  # only DPoP-bound tokens, each request with its proof (RFC 9449)

    def matches(self, path: str, method: str) -> bool:
        if self.methods and method not in self.methods and method.upper() not in self.methods:
            return False
        return self.covers(path)

    def covers(self, path: str) -> bool:
        """Whether the rule's path matches ``path`` (for some method)."""
        if self.path.endswith("/*"):
            base = self.path[:-2]
            return path == base or path.startswith(base + "/")
        return path == self.path

    def overlaps(self, public_path: str) -> bool:
        """Whether a path matched by this rule is also matched by ``public_path`` (a
        ``public-paths`` entry: itself and, unless it is "/", everything below it)."""
        if public_path == "/":
            return self.covers("/")
        prefix = public_path.rstrip("/")
        if self.path.endswith("/*"):
            base = self.path[:-2]
            return (
                base == prefix
                or base.startswith(prefix + "/")
                or prefix.startswith(base + "/")
                or not base  # "/*": everything
            )
        return self.path == prefix or self.path.startswith(prefix + "/")

    def describe(self) -> str:
        """The rule as a person wrote it, for messages (``/admin/* (DELETE)``)."""
        methods = f" ({', '.join(sorted(self.methods))})" if self.methods else ""
        return self.path + methods


def public_overlaps(
    rules: Iterable[AccessRule], public_paths: Iterable[str]
) -> list[tuple[AccessRule, str]]:
    """Each rule that covers part of a public path, with that path: there the rule wins (a
    guarded path is never anonymous); ``config check`` names them."""
    paths = tuple(public_paths)
    return [(rule, public) for rule in rules for public in paths if rule.overlaps(public)]


def _names(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        return frozenset({values})
    return frozenset(values)
