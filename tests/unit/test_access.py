"""The access decision on its own: what a requirement asks of an identity, which rule applies."""

from __future__ import annotations

from collections.abc import Set

import pytest

from adapter import AdapterConfig, ConfigError, load_config
from adapter.config.access_rules import AccessRule, Requirement, public_overlaps
from adapter.web._access import refusal, requirement_for
from adapter.web._http import private_headers, private_raw_headers
from adapter.web._steps import Identity


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


def load_rules(methods: list[str], public: list[str] | None = None) -> AdapterConfig:
    return load_config(
        {
            "issuer": "https://sso.example.com/realms/r",
            "client-id": "app",
            "public-client": True,
            "public-paths": public or [],
            "access": [{"path": "/api/*", "methods": methods, "roles": ["admin"]}],
        }
    )


def test_rule_methods_are_upper_case_and_get_covers_head() -> None:
    (rule,) = load_rules(["get", "Delete"]).web.access_rules
    assert rule.methods == {"GET", "HEAD", "DELETE"}
    for method in ("delete", "dElEtE", "DELETE", "head", "HEAD", "get"):
        assert requirement_for([rule], "/api/x", method) == rule.requirement, method
    assert requirement_for([rule], "/api/x", "post") is None


@pytest.mark.parametrize("wrong", ["DELET", "GETS", "*", ""])
def test_an_unknown_method_in_a_rule_is_refused_at_load(wrong: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_rules(["GET", wrong])
    message = str(refused.value)
    assert message.startswith("access[0].methods: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("rule", "public", "overlaps"),
    [
        ("/api/admin/*", "/api", True),
        ("/api/*", "/api/docs", True),  # the public path lies under the rule
        ("/api", "/api", True),
        ("/api", "/", False),  # "/" is public only itself
        ("/*", "/", True),
        ("/admin/*", "/api", False),
        ("/apix/*", "/api", False),
        ("/api/x", "/api/", True),
    ],
)
def test_a_rule_overlapping_a_public_path_is_found(rule: str, public: str, overlaps: bool) -> None:
    access = AccessRule(rule, frozenset(), Requirement.of(roles="admin"))
    assert access.overlaps(public) is overlaps
    assert bool(public_overlaps([access], [public])) is overlaps


def test_private_headers_respect_the_apps_own_cache_control() -> None:
    assert private_headers([], vary_cookie=True) == [
        ("Cache-Control", "private"),
        ("Vary", "Cookie"),
    ]
    assert private_headers([], vary_cookie=False) == [("Cache-Control", "private")]
    assert private_headers([("cache-control", "no-store")], vary_cookie=True) is None
    assert private_headers([("Vary", "Accept, cookie")], True) == [("Cache-Control", "private")]
    assert private_headers([("Vary", "*")], True) == [("Cache-Control", "private")]
    assert private_headers([("Vary", "Accept")], True) == [
        ("Cache-Control", "private"),
        ("Vary", "Cookie"),
    ]
    raw = private_raw_headers([(b"vary", b"Accept")], vary_cookie=True)
    assert raw == [(b"cache-control", b"private"), (b"vary", b"Cookie")]
    assert private_raw_headers([(b"Cache-Control", b"public")], vary_cookie=True) is None
