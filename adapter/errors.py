"""One exception tree for everything the adapter can refuse.

Callers catch :class:`AdapterError` to handle any adapter failure, or a subclass to handle one
kind. Every message is a single line that names the file or field at fault and says how to fix
it, and never contains a secret: messages are built from names and paths, not from values.
"""

from __future__ import annotations

ELLIPSIS = "..."


def bounded_text(value: object, limit: int = 200) -> str:
    """Text from the identity server, fit for one line of a message or a log: at most
    ``limit`` characters (cut ones end in ``...``), control characters and line breaks
    replaced, anything but a string shown by its type only.

    A server (or whoever answers in its place) chooses these strings: unbounded, they could
    fill logs, forge log lines or carry a whole response body into an exception message.
    """
    if not isinstance(value, str):
        return f"(a {type(value).__name__})"
    text = value[: limit + 1]  # never work on more than is shown
    if len(text) > limit:
        text = text[: max(limit - len(ELLIPSIS), 0)] + ELLIPSIS
    if text.isprintable():
        return text
    return "".join(_printable(c) for c in text)


def _printable(character: str) -> str:
    if character.isprintable():
        return character
    return " " if character.isspace() else "?"


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


class StoreError(AdapterError):
    """The server-side session store (Redis) cannot be reached or failed: sessions are
    unavailable until it is back (answered 503), bearer tokens and public paths keep working."""


class TokenError(AdapterError):
    """The identity server refused a request with an OAuth error response.

    ``error`` and ``description`` are the server's words, bounded (64 and 200 characters, one
    line): they reach messages and logs, and the server decides how long they are.
    """

    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = bounded_text(error, 64)
        self.description = None if description is None else bounded_text(description, 200)
        message = f"{self.error}: {self.description}" if self.description else self.error
        super().__init__(message)


class ValidationError(AdapterError):
    """A token or response failed validation (signature, issuer, audience, expiry ...)."""


class ConfigWarning(UserWarning):
    """The configuration works but contains something that is probably a mistake.

    For example an unknown field, which is ignored: it is often a typo of a real field name.
    """
