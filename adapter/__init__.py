"""oidc-adapter: sign users in to ASGI/WSGI apps against Keycloak or any OpenID Connect server.

This module is the public API; everything else is an implementation detail. Each name loads
from its module when first asked for (``from adapter import OIDCClient`` as before), so that
``import adapter.wsgi`` pays only for what the WSGI shell needs (docs/performance.md). The ASGI
names (``OIDCMiddleware``) need Starlette (the ``asgi`` extra), which a WSGI app (Flask, Django)
does not install: asked for without it, they raise an ImportError naming the extra.
"""

import importlib
import threading
from typing import TYPE_CHECKING, Any

from adapter._version import installed_version
from adapter.errors import (
    AdapterError,
    ConfigError,
    ConfigWarning,
    KeystoreError,
    ProviderError,
    TokenError,
    ValidationError,
)

if TYPE_CHECKING:
    from adapter.asgi import OIDCMiddleware
    from adapter.config import AdapterConfig, CredentialsConfig, KeyConfig, WebConfig, load_config
    from adapter.config.key_options import KeyState
    from adapter.config.secret import Secret
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

# Where each public name lives: imported when first asked for, so that ``import adapter.wsgi``
# (what a Flask or Django app pays) loads only what the WSGI shell needs, not the whole API.
_LAZY = {
    "AdapterConfig": "adapter.config",
    "CredentialsConfig": "adapter.config",
    "KeyConfig": "adapter.config",
    "WebConfig": "adapter.config",
    "load_config": "adapter.config",
    "KeyState": "adapter.config.key_options",
    "Secret": "adapter.config.secret",
    "KeyEntry": "adapter.keys._entry",
    "KeyRing": "adapter.keys.keyring",
    "SigningKey": "adapter.keys.keyring",
    "read_keystore": "adapter.keys.keystore",
    "load_key_ring": "adapter.keys.loader",
    "AsyncOIDCClient": "adapter.protocol.client",
    "OIDCClient": "adapter.protocol.client",
    "AuthorizationRequest": "adapter.protocol.flows",
    "ProviderMetadata": "adapter.protocol.provider",
    "AsyncServiceAccountAuth": "adapter.protocol.service_account",
    "ServiceAccountAuth": "adapter.protocol.service_account",
    "AsyncTokenExchangeAuth": "adapter.protocol.token_exchange",
    "TokenExchangeAuth": "adapter.protocol.token_exchange",
    "TokenSet": "adapter.protocol.tokens",
    "Identity": "adapter.web._steps",
    "current_identity": "adapter.web._steps",
    "OIDCWSGIMiddleware": "adapter.wsgi",
    "OIDCMiddleware": "adapter.asgi",  # needs Starlette: the ``asgi`` extra
}
# The subpackages an ``import adapter`` used to load: still reachable as attributes.
_SUBMODULES = frozenset(
    [
        "_observe",
        "_shell",
        "_tenancy",
        "config",
        "jose",
        "keys",
        "protocol",
        "reload",
        "state",
        "stores",
        "web",
        "wsgi",
    ]
)

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


_LOADING = threading.RLock()  # the public names' first imports, one at a time

if not TYPE_CHECKING:  # hidden from type checkers, for which a typo would otherwise be Any

    def __getattr__(name: str) -> Any:
        """The public names are imported when first asked for; ``OIDCMiddleware`` without
        Starlette raises an ImportError naming the extra to install."""
        if name in _LAZY:
            # One at a time: two threads importing a package and its submodule in opposite
            # orders (adapter.config, adapter.config.secret) can deadlock Python's import
            # locks, which then give one of them a half-initialised module.
            with _LOADING:
                home = _LAZY[name]
                # Parents first: a thread importing ``adapter.config`` directly holds its lock
                # and imports its submodules; importing ``adapter.config.secret`` here would
                # take the child's lock first, then wait for the parent's.
                parts = home.split(".")
                for end in range(2, len(parts)):  # the packages above it, outermost first
                    importlib.import_module(".".join(parts[:end]))
                value = getattr(importlib.import_module(home), name)
                globals()[name] = value  # asked once: later lookups find it directly
            return value
        if name == "__version__":  # from the installed metadata, read when first asked for
            return installed_version()
        if name in _SUBMODULES:  # ``adapter.config`` after ``import adapter``, as when eager
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})
