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
