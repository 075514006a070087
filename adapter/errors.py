"""One exception tree for everything the adapter can refuse.

Callers catch :class:`AdapterError` to handle any adapter failure, or a subclass to handle one
kind. Every message is a single line that names the file or field at fault and says how to fix
it, and never contains a secret: messages are built from names and paths, not from values.
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base class of every error the adapter raises on purpose."""


class ConfigError(AdapterError):
    """The configuration is wrong: a field has the wrong type or value, or a file is unusable.

    Raised at load time (start-up, reload, ``oidc-adapter config check``) so that a bad
    configuration never reaches a request.
    """


class KeystoreError(ConfigError):
    """A keystore cannot be used: wrong password, missing alias, corrupt file, weak key.

    A subclass of :class:`ConfigError` because a keystore is part of the configuration: code
    that validates a configuration catches one type and gets both.
    """


class ProviderError(AdapterError):
    """The identity server could not be reached or answered with something unusable."""


class TokenError(AdapterError):
    """The identity server refused a request with an OAuth error response."""

    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}" if description else error)


class ValidationError(AdapterError):
    """A token or response failed validation (signature, issuer, audience, expiry ...)."""


class ConfigWarning(UserWarning):
    """The configuration works but contains something that is probably a mistake.

    For example an unknown field, which is ignored: it is often a typo of a real field name.
    """
