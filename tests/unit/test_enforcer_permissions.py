"""What a request needs on its resource and whether granted permissions cover it, as Keycloak's
policy enforcer decides (adapter/web/_enforcer_permissions.py): the method's scopes, the modes,
an RPT's permissions matched by resource id (a resource instance by its pattern's too)."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.config.policy_enforcer import MethodConfig, PathConfig
from adapter.web._enforcer_permissions import (
    RequiredScopes,
    is_unchecked,
    method_config,
    permissions_cover,
    required_scopes,
    rpt_permissions,
    scopes_satisfied,
)

ACCOUNT = PathConfig(
    "/account/{id}",
    id="account-id",
    scopes=("view", "delete"),
    methods=(
        MethodConfig("GET", ("view",)),
        MethodConfig("DELETE", ("delete", "admin"), "ANY"),
        MethodConfig("PATCH", ("edit",), "DISABLED"),
        MethodConfig("PUT", ("edit", "view")),
    ),
)


def test_a_configured_method_needs_its_scopes_in_its_mode() -> None:
    assert required_scopes(ACCOUNT, "GET", False) == RequiredScopes(("view",), "ALL")
    assert required_scopes(ACCOUNT, "delete", False) == RequiredScopes(("delete", "admin"), "ANY")
    assert method_config(ACCOUNT, "patch") == ACCOUNT.methods[2]
    assert is_unchecked(required_scopes(ACCOUNT, "PATCH", False))


def test_another_method_needs_any_of_the_paths_scopes_or_itself() -> None:
    assert required_scopes(ACCOUNT, "POST", False) == RequiredScopes(("view", "delete"), "ANY")
    assert required_scopes(ACCOUNT, "POST", True) == RequiredScopes(("POST",), "ANY")
    # a configured method keeps its scopes even with http-method-as-scope (as Keycloak)
    assert required_scopes(ACCOUNT, "GET", True) == RequiredScopes(("view",), "ALL")


@pytest.mark.parametrize(
    ("required", "granted", "passes"),
    [
        (RequiredScopes(("a", "b"), "ALL"), {"a", "b"}, True),
        (RequiredScopes(("a", "b"), "ALL"), {"a", "c"}, False),
        (RequiredScopes(("a", "b"), "ANY"), {"b"}, True),
        (RequiredScopes(("a", "b"), "ANY"), {"c"}, False),
        (RequiredScopes(("a", "b"), "ALL"), set(), True),  # no scopes: the whole resource
        (RequiredScopes(("a",), "DISABLED"), {"c"}, True),
        (RequiredScopes((), "ALL"), {"c"}, True),
    ],
)
def test_granted_scopes_satisfy_the_mode(
    required: RequiredScopes, granted: set[str], passes: bool
) -> None:
    assert scopes_satisfied(required, granted) is passes


RPT: dict[str, Any] = {
    "sub": "alice",
    "authorization": {
        "permissions": [
            {"rsid": "account-id", "rsname": "Bank Account", "scopes": ["view"]},
            {"rsid": "statements-id", "scopes": ["delete"]},
        ]
    },
}


def test_an_rpt_covers_what_its_permission_on_the_resource_grants() -> None:
    permissions = rpt_permissions(RPT)

    assert permissions_cover(permissions, ACCOUNT, required_scopes(ACCOUNT, "GET", False))
    assert not permissions_cover(permissions, ACCOUNT, required_scopes(ACCOUNT, "PUT", False))
    # delete is granted, but on another resource
    assert not permissions_cover(permissions, ACCOUNT, required_scopes(ACCOUNT, "DELETE", False))
    assert permissions_cover(permissions, ACCOUNT, required_scopes(ACCOUNT, "PATCH", False))


def test_an_instance_counts_its_patterns_permissions() -> None:
    alice = PathConfig("/account/alice", id="alice-account", methods=ACCOUNT.methods)
    needed = required_scopes(alice, "GET", False)

    assert not permissions_cover(rpt_permissions(RPT), alice, needed)
    assert permissions_cover(rpt_permissions(RPT), alice, needed, parent_id="account-id")


def test_a_scope_only_permission_counts_for_any_path() -> None:
    permissions = [{"scopes": ["view"]}]

    assert permissions_cover(permissions, ACCOUNT, required_scopes(ACCOUNT, "GET", False))


@pytest.mark.parametrize(
    "claims",
    [{}, {"authorization": None}, {"authorization": {"permissions": "x"}}, {"authorization": []}],
)
def test_a_token_without_permissions_has_none(claims: dict[str, Any]) -> None:
    assert rpt_permissions(claims) == ()
    assert not permissions_cover(
        rpt_permissions(claims), ACCOUNT, required_scopes(ACCOUNT, "GET", False)
    )


def test_hostile_permission_entries_count_for_nothing() -> None:
    permissions = [{"rsid": "account-id", "scopes": "view"}, {"rsid": 5, "scopes": ["view"]}]

    assert not permissions_cover(permissions, ACCOUNT, required_scopes(ACCOUNT, "GET", False))
