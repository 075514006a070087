"""The configuration layer: keycloak.json as Keycloak exports it, or the native TOML/JSON, read
into one frozen :class:`AdapterConfig` (:mod:`adapter.config.model`); the typed field reader,
secret files, and the conversion from keycloak.json to the native format live beside it."""

from adapter.config.model import (
    AdapterConfig,
    CredentialsConfig,
    KeyConfig,
    WebConfig,
    load_config,
)

__all__ = ["AdapterConfig", "CredentialsConfig", "KeyConfig", "WebConfig", "load_config"]
