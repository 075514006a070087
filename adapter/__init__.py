"""oidc-adapter: sign users in to ASGI/WSGI apps against Keycloak or any OpenID Connect server.

This module is the public API; everything else is an implementation detail.
"""

from adapter.config import AdapterConfig, CredentialsConfig, KeyConfig, load_config
from adapter.errors import (
    AdapterError,
    ConfigError,
    ConfigWarning,
    KeystoreError,
    ProviderError,
    TokenError,
    ValidationError,
)
from adapter.keys._entry import KeyEntry
from adapter.keys.keyring import KeyRing, KeyState, SigningKey
from adapter.keys.keystore import read_keystore
from adapter.keys.loader import load_key_ring
from adapter.secret import Secret

__all__ = [
    "AdapterConfig",
    "AdapterError",
    "ConfigError",
    "ConfigWarning",
    "CredentialsConfig",
    "KeyConfig",
    "KeyEntry",
    "KeyRing",
    "KeyState",
    "KeystoreError",
    "ProviderError",
    "Secret",
    "SigningKey",
    "TokenError",
    "ValidationError",
    "load_config",
    "load_key_ring",
    "read_keystore",
]
