"""oidc-adapter: sign users in to ASGI/WSGI apps against Keycloak or any OpenID Connect server.

This module is the public API; everything else is an implementation detail. The ASGI names
(``OIDCMiddleware``) load when first asked for: they need Starlette (the ``asgi`` extra), which a
WSGI app (Flask, Django) does not install.
"""

from typing import TYPE_CHECKING, Any

from adapter._version import installed_version
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
from adapter.protocol.token_exchange import AsyncTokenExchangeAuth, TokenExchangeAuth
from adapter.protocol.tokens import TokenSet
from adapter.web._steps import Identity, current_identity
from adapter.wsgi import OIDCWSGIMiddleware

if TYPE_CHECKING:
    from adapter.asgi import OIDCMiddleware

__all__ = [
    "AdapterConfig",
    "AdapterError",
    "AsyncOIDCClient",
    "AsyncServiceAccountAuth",
    "AsyncTokenExchangeAuth",
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
    "TokenExchangeAuth",
    "TokenSet",
    "ValidationError",
    "WebConfig",
    "current_identity",
    "load_config",
    "load_key_ring",
    "read_keystore",
]


if not TYPE_CHECKING:  # hidden from type checkers, for which a typo would otherwise be Any

    def __getattr__(name: str) -> Any:
        """``OIDCMiddleware`` is imported when first asked for; without Starlette that raises
        an ImportError naming the extra to install."""
        if name == "OIDCMiddleware":
            from adapter.asgi import OIDCMiddleware

            globals()[name] = OIDCMiddleware  # asked once: later lookups find it directly
            return OIDCMiddleware
        if name == "__version__":  # from the installed metadata, read when first asked for
            return installed_version()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})
