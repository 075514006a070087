"""The ``[[access]]`` rules and the idioms' requirements as values: what a route needs.

They are configuration (read with the rest of it, swapped in with a reload); the decision made
with them lives in :mod:`adapter.web._access`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    """What an identity must hold: every role, client role and scope listed, and at least one
    of ``any_role`` when it is given (realm or client roles both count for it); and how it
    signed in (step-up): an ``acr`` among ``acr`` when given (in the order a login asks for
    them, the preferred first), an ``auth_time`` at most ``max_age`` seconds old when given."""

    roles: frozenset[str] = frozenset()
    client_roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    any_role: frozenset[str] = frozenset()
    acr: tuple[str, ...] = ()
    max_age: int | None = None

    @classmethod
    def of(
        cls,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        any_role: Iterable[str] = (),
        acr: Iterable[str] = (),
        max_age: int | None = None,
    ) -> Requirement:
        """Built from any iterables; a single string counts as one name, not as letters.
        Raises ``ValueError`` for an ``acr`` value that is not a token (no spaces, quotes or
        control characters: it goes into ``acr_values`` and a ``WWW-Authenticate`` header),
        more than :data:`MAX_ACR_VALUES` of them (a login passes on no more), or a ``max_age``
        under :data:`MIN_STEP_UP_AGE` (a sign-in would never be recent enough for long)."""
        values = (acr,) if isinstance(acr, str) else tuple(dict.fromkeys(acr))
        for value in values:
            if not ACR_VALUE.fullmatch(value):
                raise ValueError(f"acr value {value!r} is not a token (letters, digits, :/._-)")
        if len(values) > MAX_ACR_VALUES:
            raise ValueError(f"list at most {MAX_ACR_VALUES} acr values (a login asks for no more)")
        if max_age is not None and (isinstance(max_age, bool) or max_age < MIN_STEP_UP_AGE):
            raise ValueError(
                f"max_age {max_age!r}: give at least {MIN_STEP_UP_AGE} seconds (a sign-in is "
                "never more recent than the round trip to the identity server)"
            )
        return cls(
            _names(roles), _names(client_roles), _names(scopes), _names(any_role), values, max_age
        )

    @property
    def steps_up(self) -> bool:
        """Whether it asks how the identity signed in (``acr``, ``max_age``)."""
        return bool(self.acr) or self.max_age is not None


MAX_ACR_VALUES = 8  # acr values a rule may list: a login passes on no more
MIN_STEP_UP_AGE = 30  # seconds: the least max-age a rule or require() may ask for

# What an acr value may hold: a URI or a name (Keycloak's levels are names or digits: "gold",
# "1"; RFC 8176 URIs), nothing that needs quoting in a header or escaping in a query.
ACR_VALUE = re.compile(r"[A-Za-z0-9:/._~%#?=&+-]{1,200}")


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
