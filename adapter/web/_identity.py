"""The identity the app sees, built from a session's or a bearer token's claims.

Keycloak puts realm roles in ``realm_access.roles`` and each client's roles in
``resource_access.<client>.roles``; ``use-resource-role-mappings`` makes the client's own roles
stand in for the realm's, as Keycloak's adapters did. The display name is
``principal-attribute`` (else ``sub``), never a claim the user may choose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapter.config import AdapterConfig
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.tokens import freeze
from adapter.web._steps import Authorizer, Identity, TokenExchanger


def identity_from_claims(
    config: AdapterConfig,
    claims: Mapping[str, Any],
    access_token: str | None = None,
    id_token: str | None = None,
    csrf_token: str | None = None,
    scope: str | None = None,
    dpop_key: DPoPKey | None = None,
    exchanger: TokenExchanger | None = None,
    authorizer: Authorizer | None = None,
) -> Identity:
    """The identity for these claims; ``scope`` is the granted scope when the token response
    said it (else the claims' ``scope``); ``exchanger``: the client its ``exchange`` uses;
    ``authorizer``: the policy enforcer its ``has_permission`` asks."""
    realm_access = claims.get("realm_access")
    roles = _strings(realm_access.get("roles") if isinstance(realm_access, dict) else None)
    resource_access = claims.get("resource_access")
    client = resource_access.get(config.client_id) if isinstance(resource_access, dict) else None
    client_roles = _strings(client.get("roles") if isinstance(client, dict) else None)
    if config.use_resource_role_mappings:
        roles = client_roles  # Keycloak: the client's own roles stand in for realm roles
    granted = scope if scope is not None else claims.get("scope")
    scopes = frozenset(granted.split()) if isinstance(granted, str) else frozenset()
    return Identity(
        # Shared by the requests of a session: read-only (freeze copies a plain dict).
        claims=freeze(claims if type(claims) is dict else dict(claims)),
        display_name=principal(config, claims),
        roles=roles,
        client_roles=client_roles,
        scopes=scopes | {"authenticated"},
        access_token=access_token,
        id_token=id_token,
        csrf_token=csrf_token,
        tenant=config.tenant,
        dpop_key=dpop_key,
        exchanger=exchanger,
        authorizer=authorizer,
    )


def principal(config: AdapterConfig, claims: Mapping[str, Any]) -> str:
    """The name the app sees: ``principal-attribute``, else ``sub`` (as Keycloak does).

    Never another claim the user may choose (``preferred_username`` is editable in many
    realms), and ``email`` only when the server says it is verified.
    """
    attribute = config.principal_attribute
    value = claims.get(attribute)
    if attribute == "email" and claims.get("email_verified") is not True:
        value = None
    if not isinstance(value, str) or not value:
        value = claims.get("sub")
    return str(value or "")


def _strings(value: object) -> frozenset[str]:
    if isinstance(value, list | tuple):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()
