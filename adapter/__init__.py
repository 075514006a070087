"""oidc-adapter: sign users in to ASGI/WSGI apps against Keycloak or any OpenID Connect server.

This module is the public API; everything else is an implementation detail.
"""

from adapter.asgi import OIDCMiddleware
from adapter.client import AsyncOIDCClient, OIDCClient
from adapter.config import AdapterConfig, CredentialsConfig, KeyConfig, WebConfig, load_config
from adapter.core import Identity, current_identity
from adapter.errors import (
    AdapterError,
    ConfigError,
    ConfigWarning,
    KeystoreError,
    ProviderError,
    TokenError,
    ValidationError,
)
from adapter.flows import AuthorizationRequest
from adapter.keys._entry import KeyEntry
from adapter.keys.keyring import KeyRing, KeyState, SigningKey
from adapter.keys.keystore import read_keystore
from adapter.keys.loader import load_key_ring
from adapter.provider import ProviderMetadata
from adapter.secret import Secret
from adapter.service_account import AsyncServiceAccountAuth, ServiceAccountAuth
from adapter.tokens import TokenSet
from adapter.wsgi import OIDCWSGIMiddleware

__all__ = [
    "AdapterConfig",
    "AdapterError",
    "AsyncOIDCClient",
    "AsyncServiceAccountAuth",
    "AuthorizationRequest",
    "ConfigError",
    "ConfigWarning",
    "CredentialsConfig",
    "Identity",
    "KeyConfig",
    "KeyEntry",
    "KeyRing",
    "KeyState",
    "KeystoreError",
    "OIDCClient",
    "OIDCMiddleware",
    "OIDCWSGIMiddleware",
    "ProviderError",
    "ProviderMetadata",
    "Secret",
    "ServiceAccountAuth",
    "SigningKey",
    "TokenError",
    "TokenSet",
    "ValidationError",
    "WebConfig",
    "current_identity",
    "load_config",
    "load_key_ring",
    "read_keystore",
]
