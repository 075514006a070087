"""What a security profile asks of a configuration (``profile = "fapi2"``), applied and
enforced once, when the configuration is loaded, so that the rest of the adapter reads
ordinary settings and never asks which profile is on.

FAPI 2.0 Security Profile (§5.3.3 for clients): every login pushed (PAR) with PKCE S256 (the
adapter's only way), the client authenticated by ``private_key_jwt`` (or mTLS), no shared
secrets, no RS256 (PS256, ES256, EdDSA), RFC 9207's ``iss`` in every authorization response.
``fapi2-message-signing`` adds signed request objects (JAR). A setting that contradicts the
profile is refused, naming the field; a default the profile changes is changed here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from adapter.errors import ConfigError

Profile = Literal["none", "fapi2", "fapi2-message-signing"]
FAPI_ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
FAPI_METHODS = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
TLS_METHODS = FAPI_METHODS[1:]  # their tokens are bound to the TLS client certificate
FAPI_ASSERTION_TYP = "client-authentication+jwt"  # RFC 7523bis; Keycloak ignores typ
FAPI_RSA_DEFAULT = "PS256"  # an RSA key without an algorithm signs PS256 under the profile


@dataclass(frozen=True)
class Chosen:
    """The settings a profile decides on, as the file gave them (or their defaults)."""

    method: str
    algorithm: str | None  # credentials.algorithm
    pushed: str  # pushed-authorization-requests
    request_objects: str
    id_token_alg: str
    assertion_typ: str | None
    dpop_tokens: bool
    signed_responses: str


def apply_profile(profile: Profile, chosen: Chosen, explicit: frozenset[str]) -> Chosen:
    """The settings as ``profile`` has them; ``explicit`` names the fields the file sets (a
    default the profile changes, a value it refuses, naming the field)."""
    if profile == "none":
        return chosen
    named = f'profile "{profile}"'
    _refuse_client(chosen, named)
    if chosen.pushed == "never":
        raise ConfigError(
            f'pushed-authorization-requests: "never" is refused by {named} (FAPI 2.0 pushes '
            "every login); remove it"
        )
    signing = profile == "fapi2-message-signing"
    if signing and "request-objects" in explicit and chosen.request_objects != "signed":
        raise ConfigError(f'request-objects: {named} signs every login; remove "off"')
    mtls = chosen.method in TLS_METHODS  # the certificate binds the tokens
    if "dpop-tokens" in explicit and not chosen.dpop_tokens and not mtls:
        raise ConfigError(
            f"dpop-tokens: {named} binds the app's tokens to a key (DPoP, or mTLS with a "
            "tls_client_auth method); remove false"
        )
    id_token_alg = chosen.id_token_alg if "id-token-signing-alg" in explicit else "PS256"
    if id_token_alg not in FAPI_ALGORITHMS:
        raise ConfigError(f"id-token-signing-alg: {_algorithm_refused(id_token_alg, named)}")
    return replace(
        chosen,
        pushed="always",
        request_objects="signed" if signing else chosen.request_objects,
        id_token_alg=id_token_alg,
        assertion_typ=chosen.assertion_typ or FAPI_ASSERTION_TYP,
        dpop_tokens=chosen.dpop_tokens or not mtls,
        signed_responses=_signed_responses(chosen, signing),
    )


def _signed_responses(chosen: Chosen, signing: bool) -> str:
    """Message signing asks for signed responses (JARM) where the server offers them."""
    return "auto" if signing and chosen.signed_responses == "off" else chosen.signed_responses


def _refuse_client(chosen: Chosen, named: str) -> None:
    """How the client authenticates: by a key (never a shared secret), not with RS256."""
    if chosen.method not in FAPI_METHODS:
        raise ConfigError(
            f"credentials.method: {chosen.method} is refused by {named} (FAPI 2.0 "
            f"authenticates clients with {', '.join(FAPI_METHODS)}, never a shared secret)"
        )
    if chosen.algorithm is not None and chosen.algorithm not in FAPI_ALGORITHMS:
        raise ConfigError(f"credentials.algorithm: {_algorithm_refused(chosen.algorithm, named)}")


def key_algorithm_problem(profile: Profile, algorithm: str) -> str | None:
    """Why ``profile`` refuses a client key that signs ``algorithm`` (``None``: it may)."""
    if profile == "none" or algorithm in FAPI_ALGORITHMS:
        return None
    return _algorithm_refused(algorithm, f'profile "{profile}"')


def what_it_enforces(profile: Profile) -> list[str]:
    """The profile's rules, one line each, for ``config check``."""
    if profile == "none":
        return []
    rules = [
        "every login pushed (PAR) with PKCE S256",
        f"client authentication: {', '.join(FAPI_METHODS)} (no client secrets)",
        f"key and ID token algorithms: {', '.join(FAPI_ALGORITHMS)} (RS256 refused)",
        f"client assertions typ {FAPI_ASSERTION_TYP}",
        "iss required in every authorization response (RFC 9207)",
    ]
    rules.append("tokens sender-constrained: DPoP (dpop-tokens) or the mTLS certificate")
    if profile == "fapi2-message-signing":
        rules.append("every login signed (request objects, JAR)")
        rules.append("signed responses (JARM) where the server offers them")
    return rules


def _algorithm_refused(algorithm: str, named: str) -> str:
    return f"{algorithm} is refused by {named}; use PS256, ES256 or EdDSA"
