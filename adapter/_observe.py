"""The points where the adapter reports what it does, for metrics (see :mod:`adapter.metrics`).

By default nobody listens and every report is a method call that does nothing; the hottest
path (``/k_jwks``) checks :data:`listening` first and skips even that.
``adapter.metrics.enable()`` installs a listener that counts.

Every report names its tenant: the configured name (``AdapterConfig.tenant``, fixed when the
configuration was built), ``None`` for a plain configuration; never anything from a request, so
a listener's labels stay as few as the configured tenants.
"""

from __future__ import annotations


class Observer:
    """What can be observed; this base class ignores it all."""

    def login(self, tenant: str | None, ok: bool) -> None:
        """A sign-in finished (``ok``) or was refused."""

    def refresh(self, tenant: str | None, ok: bool) -> None:
        """A session's tokens were refreshed, or the refresh failed."""

    def token_call(self, tenant: str | None, seconds: float, ok: bool) -> None:
        """One call to the identity server's token endpoint (or another authenticated one)."""

    def jwks_answer(self, tenant: str | None, status: int, etag: str) -> None:
        """``/k_jwks`` answered (200 or 304) for the key set with this ETag."""

    def reload(self, tenant: str | None, ok: bool) -> None:
        """A configuration reload succeeded or was refused."""


observer = Observer()  # replaced by adapter.metrics.enable()
listening = False  # set with it: the hottest paths skip even the empty call while False
