"""oidc-adapter: sign users in to ASGI/WSGI apps against Keycloak or any OpenID Connect server.

This module is the public API; everything else is an implementation detail.
"""

from adapter.asgi import OIDCMiddleware
from adapter.config import AdapterConfig, CredentialsConfig, KeyConfig, WebConfig, load_config
from adapter.config.key_options import KeyState
from adapter.config.secret import Secret
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
from adapter.keys.keyring import KeyRing, SigningKey
from adapter.keys.keystore import read_keystore
from adapter.keys.loader import load_key_ring
from adapter.protocol.client import AsyncOIDCClient, OIDCClient
from adapter.protocol.flows import AuthorizationRequest
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.service_account import AsyncServiceAccountAuth, ServiceAccountAuth
from adapter.protocol.tokens import TokenSet
from adapter.web.core import Identity, current_identity
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
