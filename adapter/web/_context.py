"""What the route modules (``_login``, ``_bearer``, ``_backchannel``) and the session
refresh (``_refresh``) may use of the core.

:class:`RouteContext` lists exactly the members they read or call; ``WebCore`` has them all
and is handed in as it is (a Protocol: nothing to inherit; mypy checks it where ``WebCore``
passes itself to a route). The route modules import this module, never ``core``, so the
core's imports run one way: down to the routes it dispatches to.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from string import Template
from typing import Any, Protocol

from adapter.config import AdapterConfig, WebConfig
from adapter.keys.keyring import KeyRing
from adapter.protocol.dpop import DPoPKey, ProofMemory
from adapter.protocol.tokens import ClaimRules, RefusedTokens, ValidatedTokenCache
from adapter.web._decisions import DecisionCache
from adapter.web._session_cookies import SessionCookies
from adapter.web._steps import Identity, Proceed, Respond, Step, WebRequest


class RouteContext(Protocol):
    """The core as a route sees it: one configuration and key ring's settings, caches and
    shared checks (read-only here: a route never replaces any of them)."""

    # -- settings, for one configuration ----------------------------------------------------

    @property
    def config(self) -> AdapterConfig: ...

    @property
    def web(self) -> WebConfig: ...

    @property
    def ring(self) -> KeyRing: ...

    @property
    def error_template(self) -> Template | None: ...

    @property
    def audiences(self) -> tuple[str, ...]: ...

    @property
    def bearer_rules(self) -> ClaimRules: ...

    # -- sessions, caches and remembered decisions -------------------------------------------

    @property
    def cookies(self) -> SessionCookies: ...

    @property
    def decisions(self) -> DecisionCache[Proceed]: ...

    @property
    def decisions_epoch(self) -> int: ...

    @property
    def validated(self) -> ValidatedTokenCache: ...

    @property
    def refused(self) -> RefusedTokens: ...

    @property
    def introspected_roles(self) -> ValidatedTokenCache: ...

    @property
    def proofs(self) -> ProofMemory: ...

    def remember_bearer(self, token: str, claims: Mapping[str, Any], outcome: Proceed) -> None: ...

    # -- shared checks and answers ----------------------------------------------------------

    def id_token_rules(self, nonce: str | None) -> ClaimRules: ...

    def identity_from_claims(
        self,
        claims: Mapping[str, Any],
        access_token: str | None = None,
        id_token: str | None = None,
        csrf_token: str | None = None,
        scope: str | None = None,
        dpop_key: DPoPKey | None = None,
    ) -> Identity: ...

    def forbidden(
        self, request: WebRequest, identity: Identity | None, proven: bool = False
    ) -> Respond | None: ...

    def enforce(
        self, request: WebRequest, identity: Identity | None, *, bearer: bool
    ) -> Generator[Step, Any, Identity | Respond | None]: ...

    def is_public(self, path: str, method: str) -> bool: ...

    def redirect_uri(self, request: WebRequest) -> str: ...

    def absolute(self, request: WebRequest, path: str) -> str: ...
