"""Roles for tokens that do not carry them: Keycloak's lightweight access tokens.

Keycloak 24+ can issue access tokens without ``realm_access``/``resource_access`` ("Always use
lightweight access token", or the client's "lightweight" scope): every role rule would then
answer 403. Keycloak's remedy is introspection, whose answer carries the roles. ``roles-from``
chooses: ``token`` (the roles in the token, as before; a token without any is logged once per
client), ``introspection`` (always from the server) or ``auto`` (from the server when the token
has none). The server is asked once per token: the answer's roles are kept until the token
expires, in a cache bounded in entries and bytes, and concurrent requests with one new token
share one call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Mapping
from typing import Any

from adapter.errors import ValidationError
from adapter.jose import ASYMMETRIC_ALGORITHMS, MAX_ISSUED_TOKEN_LENGTH
from adapter.protocol import flows
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import ValidatedTokenCache, verify_jwt
from adapter.web._http import digest
from adapter.web._steps import NeedIntrospection, NeedMetadata, Step

log = logging.getLogger(__name__)
ROLE_CLAIMS = ("realm_access", "resource_access")  # where Keycloak puts roles

_warned: set[tuple[str, str]] = set()  # (issuer, client): told once per process


def has_roles(claims: Mapping[str, Any]) -> bool:
    """Whether the token carries Keycloak's role claims (possibly empty ones)."""
    return any(name in claims for name in ROLE_CLAIMS)


def needs_introspection(roles_from: str, claims: Mapping[str, Any]) -> bool:
    """Whether ``roles-from`` sends this token's roles question to the server."""
    return roles_from == "introspection" or (roles_from == "auto" and not has_roles(claims))


def note_roleless(roles_from: str, issuer: str, client_id: str, claims: Mapping[str, Any]) -> None:
    """Log once per client that tokens arrive without role claims while roles are read from
    the token: every role rule will refuse them (the fix: ``roles-from = "auto"``)."""
    key = (issuer, client_id)
    if roles_from != "token" or has_roles(claims) or key in _warned:
        return
    _warned.add(key)
    log.warning(
        "access tokens for %r arrive without role claims (Keycloak's lightweight access "
        'tokens?): role rules will refuse them; set roles-from = "auto" to read the roles '
        "by introspection, or add the roles mapper to the token",
        client_id,
    )


def with_roles(
    roles_from: str,
    cache: ValidatedTokenCache,
    token: str,
    claims: Mapping[str, Any],
    issuer: str = "",
    client_id: str = "",
) -> Generator[Step, Any, Mapping[str, Any]]:
    """``claims`` with the role claims the server's introspection gives for ``token`` (which
    replace the token's own), when ``roles_from`` asks for them; ``claims`` as they are
    otherwise. ``ValidationError`` when the server says the token is not active."""
    if not needs_introspection(roles_from, claims):
        return claims
    key = digest(token)
    roles = cache.get(key)
    if roles is None:
        roles = yield from _introspected_roles(key, token, claims.get("exp"), issuer, client_id)
        cache.put(key, roles, size=len(json.dumps(roles, default=str)))  # kept by their size
    merged = {name: value for name, value in claims.items() if name not in ROLE_CLAIMS}
    merged.update({name: roles[name] for name in ROLE_CLAIMS if name in roles})
    return merged


def _introspected_roles(
    key: str, token: str, exp: object, issuer: str, client_id: str
) -> Generator[Step, Any, dict[str, Any]]:
    """The role claims of the server's introspection answer (and the token's ``exp``, for
    the cache). One call per token in flight (the shells' introspection single flight). The
    answer is asked for signed (RFC 9701; Keycloak's ``Accept: application/jwt``): a server
    that signs it has its signature checked with its keys; plain JSON over the authenticated
    TLS call counts otherwise."""
    metadata: ProviderMetadata = yield NeedMetadata()
    endpoint = metadata.endpoint("introspection_endpoint")
    answer = yield NeedIntrospection(
        "roles:" + key, flows.introspect(endpoint, token, "access_token", signed=True)
    )
    if "jwt" in answer and "active" not in answer:  # the server signed it (RFC 9701): verify
        claims = yield from verify_jwt(
            answer["jwt"], ASYMMETRIC_ALGORITHMS, max_length=MAX_ISSUED_TOKEN_LENGTH
        )
        answer = flows.signed_introspection(claims, issuer, client_id)
    if not answer.get("active"):
        raise ValidationError("the server says the token is not active (introspection)")
    roles = {name: answer[name] for name in ROLE_CLAIMS if isinstance(answer.get(name), dict)}
    roles["exp"] = exp if isinstance(exp, int | float) else answer.get("exp")  # kept as long
    return roles
