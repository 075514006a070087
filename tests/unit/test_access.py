"""The access decision on its own: what a requirement asks of an identity, which rule applies."""

from __future__ import annotations

from collections.abc import Set

from adapter.config.access_rules import AccessRule, Requirement
from adapter.web._access import refusal, requirement_for
from adapter.web.core import Identity


def identity(
    roles: Set[str] = frozenset(), client: Set[str] = frozenset(), scopes: Set[str] = frozenset()
) -> Identity:
    return Identity({"sub": "u"}, "u", frozenset(roles), frozenset(client), frozenset(scopes))


def test_every_listed_role_client_role_and_scope_is_needed() -> None:
    need = Requirement.of(roles=["admin", "user"], client_roles="editor", scopes=["api:write"])
    assert refusal(identity({"admin", "user"}, {"editor"}, {"api:write"}), need) is None
    missing_scope = refusal(identity({"admin", "user"}, {"editor"}, {"api:read"}), need)
    assert missing_scope is not None
    assert (missing_scope.kind, missing_scope.missing) == ("scope", ("api:write",))
    missing_role = refusal(identity({"user"}, set(), {"api:write"}), need)
    assert missing_role is not None
    assert (missing_role.kind, missing_role.missing) == ("role", ("admin", "editor"))


def test_any_role_takes_realm_or_client_roles() -> None:
    need = Requirement.of(any_role=["admin", "editor"])
    assert refusal(identity(client={"editor"}), need) is None
    assert refusal(identity(roles={"admin"}), need) is None
    assert refusal(identity(roles={"user"}), need) is not None


def test_first_matching_rule_wins_and_prefixes_match_below_them() -> None:
    admin = Requirement.of(roles="admin")
    writer = Requirement.of(scopes="api:write")
    rules = [
        AccessRule("/admin/public", frozenset(), Requirement()),
        AccessRule("/admin/*", frozenset(), admin),
        AccessRule("/api/*", frozenset({"POST"}), writer),
    ]
    assert requirement_for(rules, "/admin/public", "GET") == Requirement()
    assert requirement_for(rules, "/admin", "GET") is admin
    assert requirement_for(rules, "/admin/x/y", "DELETE") is admin
    assert requirement_for(rules, "/administrator", "GET") is None, "a prefix is a path segment"
    assert requirement_for(rules, "/api/x", "GET") is None
    assert requirement_for(rules, "/api/x", "POST") is writer
