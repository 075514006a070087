"""``userinfo = true``: the UserInfo endpoint's claims merged into the session's.

Fetched at sign-in and at every refresh (claims change at the server: a new email shows at
the next refresh that brings a new ID token, as Keycloak's always do), with the session's
access token. The ID token's claims win where both say something (it is the signed statement
of the login), and what only the sign-in or the grant may say (``acr``, ``auth_time``, ``sid``,
roles, ``scope`` ...: :data:`adapter.protocol.userinfo.NOT_FROM_USERINFO`) is never taken
from UserInfo, which describes the user as the server knows them now.
A JWT answer is decrypted (the client's ``use = "enc"`` keys) and verified with the server's
keys; an answer about another subject fails the sign-in (or ends the refresh).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from adapter.jose import ASYMMETRIC_ALGORITHMS, MAX_ISSUED_TOKEN_LENGTH
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.jwe import expected_any, signed_token
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import TokenSet, verify_jwt
from adapter.protocol.userinfo import check_userinfo, userinfo
from adapter.web._context import RouteContext
from adapter.web._steps import NeedFlow, NeedMetadata, Step


def with_userinfo(
    core: RouteContext, claims: dict[str, Any], tokens: TokenSet, dpop: DPoPKey | None
) -> Generator[Step, Any, dict[str, Any]]:
    """``claims`` with the UserInfo answer's beneath them (``userinfo = true``)."""
    if not core.web.userinfo:
        return claims
    metadata: ProviderMetadata = yield NeedMetadata()
    endpoint = metadata.endpoint("userinfo_endpoint")
    answer = yield NeedFlow(userinfo(endpoint, tokens.access_token, dpop))
    signed = isinstance(answer, str)
    if isinstance(answer, str):
        answer = yield from verify_jwt(
            signed_token(answer, expected_any(core.ring)),
            ASYMMETRIC_ALGORITHMS,
            max_length=MAX_ISSUED_TOKEN_LENGTH,
        )
    config = core.config
    found = check_userinfo(answer, claims.get("sub"), config.issuer, config.client_id, signed)
    return {**found, **claims}
