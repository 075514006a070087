"""Signed authorization requests (JAR, RFC 9101): the login's parameters in a JWT the client
signs with its active key, so nobody between the app and the server (a browser extension, a
proxy, the user) can change what was asked: scope, redirect URI, PKCE challenge.

The request object is what FAPI 2.0's message signing asks for; inside a pushed request
(RFC 9126) it never even passes through the browser. Keycloak checks it with the client's keys
(its JWKS URL), so the same key ring signs it as signs the client's assertions.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping

from adapter.errors import ConfigError
from adapter.jose import encode_header, sign_compact
from adapter.keys.keyring import KeyRing

REQUEST_OBJECT_TYP = "oauth-authz-req+jwt"  # RFC 9101 §10.8
REQUEST_OBJECT_LIFETIME = 60  # seconds: FAPI 2.0 message signing asks for at most 60

RequestSigner = Callable[[Mapping[str, str]], str]  # the parameters -> a signed request object


def request_signer(
    ring: KeyRing,
    client_id: str,
    issuer: str,
    accepted: tuple[str, ...] = (),
    *,
    lifetime: int = REQUEST_OBJECT_LIFETIME,
    backdate: int = 0,
    clock: Callable[[], float] = time.time,
) -> RequestSigner:
    """What signs one login's request object with the ring's active key (at the time of the
    login: a rotation needs no rebuild). ``accepted`` is the server's
    ``request_object_signing_alg_values_supported``: a key it would refuse is a configuration
    error here (logged, naming both), not an opaque ``invalid_request_object`` there.
    ``backdate`` moves ``iat``, ``nbf`` and ``exp`` back as for client assertions
    (``credentials.assertion-backdate``: a server whose clock is behind)."""

    def sign(params: Mapping[str, str]) -> str:
        key = ring.active()
        if accepted and key.alg not in accepted:
            raise ConfigError(
                f"request objects: the identity server takes {', '.join(accepted)}, the "
                f"active key {key.kid} signs {key.alg}; give the client a key it accepts"
            )
        now = int(clock()) - backdate
        header = encode_header({"alg": key.alg, "kid": key.kid, "typ": REQUEST_OBJECT_TYP})
        claims = {
            **params,
            "iss": client_id,
            "aud": issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        return sign_compact(header, claims, key.sign)

    return sign
