"""What a configured key may say: its rotation state and its keystore's type by extension.

The configuration checks these words when it loads, and the key layer (:mod:`adapter.keys`)
acts on them, so they live here, below both: keys import them from config, never the reverse.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

# The words a configured key's ``state`` may say (KeyConfig.state): KeyState's values, which
# tests/unit/test_config_settings.py holds equal.
KeyStateName = Literal["next", "active", "retired"]


class KeyState(StrEnum):
    """Where a key stands in its rotation (DESIGN.md, key rotation model)."""

    NEXT = "next"  # published, does not sign yet
    ACTIVE = "active"  # published, signs (exactly one per ring at any instant)
    RETIRED = "retired"  # published, signs no more


# A keystore's type, told by its file extension when the configuration does not declare it.
KEYSTORE_EXTENSIONS = {
    ".p12": "PKCS12",
    ".pfx": "PKCS12",
    ".jks": "JKS",
    ".jceks": "JKS",
    ".keystore": "JKS",
    ".pem": "PEM",
    ".key": "PEM",
    ".jwk": "JWK",
    ".jwks": "JWK",
    ".json": "JWK",
}

# What a configured key is for (KeyConfig.use): "sig" signs (client assertions, request
# objects), "enc" decrypts what the server encrypts to the client (ID tokens).
KeyUseName = Literal["sig", "enc"]

# The key-management algorithms an "enc" key may have (RFC 7518 §4), by key type. RSA1_5 is
# not among them: RSAES-PKCS1-v1_5 decryption is a padding oracle (Bleichenbacher), refused.
RSA_KEY_MANAGEMENT = ("RSA-OAEP-256", "RSA-OAEP")
EC_KEY_MANAGEMENT = ("ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A256KW")
KEY_MANAGEMENT_ALGORITHMS = (*RSA_KEY_MANAGEMENT, *EC_KEY_MANAGEMENT)
# The content encryption a JWE may use (RFC 7518 §5); the first is OpenID registration's
# default for id_token_encrypted_response_enc when only the alg is set.
CONTENT_ENCRYPTION_ALGORITHMS = ("A128CBC-HS256", "A128GCM", "A256GCM", "A256CBC-HS512")
REFUSED_KEY_MANAGEMENT = {
    "RSA1_5": "RSA1_5 is refused (RSAES-PKCS1-v1_5 decryption is a padding oracle); use "
    "RSA-OAEP-256",
}


def key_management_problem(use: str, alg: str) -> str | None:
    """Why ``alg`` cannot be the algorithm of a key with this ``use``, or ``None``; the
    fix is in the words (only the names are checked here: the key type comes with the file)."""
    if use == "enc":
        if alg in REFUSED_KEY_MANAGEMENT:
            return REFUSED_KEY_MANAGEMENT[alg]
        if alg not in KEY_MANAGEMENT_ALGORITHMS:
            return (
                f'{alg} is not a key-management algorithm, and a use = "enc" key decrypts; '
                f"use one of {', '.join(KEY_MANAGEMENT_ALGORITHMS)}"
            )
        return None
    if alg in KEY_MANAGEMENT_ALGORITHMS or alg in REFUSED_KEY_MANAGEMENT:
        return f'{alg} encrypts, it does not sign; set use = "enc" on this key, or a JWS algorithm'
    return None
