"""A wrapper that keeps secrets out of reprs, logs and error messages by default."""

from __future__ import annotations


class Secret:
    """A password or client secret. ``reveal()`` is the only way to get the value.

    ``repr()`` and ``str()`` say where the value came from (``env KEYSTORE_PASSWORD``,
    ``file /run/secrets/x``, ``configuration``) and never the value, so a configuration object
    can be printed or logged whole.
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "configuration") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The secret value, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<from {self.source}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)
