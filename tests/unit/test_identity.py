"""What the app sees of a user: roles as Keycloak's adapters gave them, the principal's name."""

from __future__ import annotations

from typing import Any

from adapter import load_config
from adapter.keys.keyring import KeyRing
from adapter.web.core import WebCore

CLAIMS = {
    "sub": "u-1",
    "preferred_username": "alice",
    "realm_access": {"roles": ["user", "admin"]},
    "resource_access": {"app": {"roles": ["editor"]}, "other": {"roles": ["root"]}},
}


def core(**extra: Any) -> WebCore:
    config = load_config(
        {
            "issuer": "https://sso.example.com/realms/demo",
            "client-id": "app",
            "public-client": True,
            **extra,
        }
    )
    return WebCore(config, KeyRing([]))


def test_realm_roles_by_default_client_roles_beside() -> None:
    identity = core().identity_from_claims(CLAIMS)
    assert identity.roles == {"user", "admin"}
    assert identity.client_roles == {"editor"}, "this client's roles only, never another's"


def test_use_resource_role_mappings_makes_the_clients_roles_the_roles() -> None:
    """Keycloak's use-resource-role-mappings: role checks use the client's own roles."""
    identity = core(**{"use-resource-role-mappings": True}).identity_from_claims(CLAIMS)
    assert identity.roles == {"editor"}
    assert identity.client_roles == {"editor"}
