"""The UserInfo endpoint (OpenID Connect Core §5.3): claims the ID token does not carry.

Some servers (and Keycloak clients whose mappers put claims in "userinfo" only) keep the ID
token small and answer the rest here, as plain JSON, as a JWT the server signs
(``userinfo_signed_response_alg``) or encrypts to the client's keys
(``userinfo_encrypted_response_alg``). The flow fetches the answer; the caller verifies a JWT
answer with the server's keys (:func:`check_userinfo`) after decrypting an encrypted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from adapter.errors import TokenError, ValidationError
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.flows import Flow, Send, json_object

# What a signed answer says about itself, never merged into the user's claims.
PROTOCOL_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti", "azp", "typ"})
# What only the sign-in may say (how and when it happened, its session, its nonce and hashes)
# and what only the access token grants (roles, scope, binding): never taken from UserInfo,
# which describes the user as the server knows them now, not the sign-in or the grant.
NOT_FROM_USERINFO = PROTOCOL_CLAIMS | frozenset(
    {
        "acr", "amr", "auth_time", "sid", "nonce", "at_hash", "c_hash", "s_hash",
        "session_state", "cnf", "scope", "realm_access", "resource_access",
    }
)  # fmt: skip


def userinfo(
    endpoint: str, access_token: str, dpop: DPoPKey | None = None
) -> Flow[dict[str, Any] | str]:
    """GET the UserInfo endpoint with the access token (``Bearer``, or with ``dpop`` the key
    the token is bound to: ``Authorization: DPoP`` and a proof with ``ath``). The answer: a
    JSON object, or a JWT (``application/jwt``: signed or encrypted) as text."""
    headers = {"Accept": "application/json, application/jwt"}
    if dpop is None:
        headers["Authorization"] = f"Bearer {access_token}"
    request = httpx.Request("GET", endpoint, headers=headers)
    response = yield Send(request, dpop=dpop, access_token=access_token if dpop else None)
    if response.status_code in (401, 403):
        raise TokenError("invalid_token", "the UserInfo endpoint refused the access token")
    media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if response.status_code == 200 and media == "application/jwt":
        return response.text.strip()
    return json_object(response, "userinfo")


def check_userinfo(
    claims: Mapping[str, Any], subject: object, issuer: str, client_id: str, signed: bool
) -> dict[str, Any]:
    """The user's claims of a UserInfo answer, after OpenID Connect Core §5.3.2's checks: its
    ``sub`` must be the ID token's (else the answer is about someone else: token substitution);
    a signed answer's ``iss`` and ``aud``, when present, must name the server and this client.
    Its own protocol claims (``iss``, ``aud``, ``exp`` ...) are dropped, and so is anything
    only the sign-in or the access token may say (:data:`NOT_FROM_USERINFO`)."""
    if claims.get("sub") != subject or not isinstance(subject, str):
        raise ValidationError("the UserInfo answer names another subject than the ID token")
    if signed:
        if "iss" in claims and claims["iss"] != issuer:
            raise ValidationError("the signed UserInfo answer comes from another issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if "aud" in claims and client_id not in audiences:
            raise ValidationError("the signed UserInfo answer is for another client")
    return {name: value for name, value in claims.items() if name not in NOT_FROM_USERINFO}
