"""Framework-neutral request handling: the full path of every request.

:meth:`WebCore.handle` takes a :class:`WebRequest` and is a generator: it yields the I/O it
needs (server metadata, server keys, a protocol flow, a token refresh) as :class:`Step` objects
and returns an :data:`Outcome`: either a response to send (redirect, 401, JWKS ...) or
:class:`Proceed` to call the app with an identity. The shells reach it through the entry
(:mod:`adapter.web.entry`), which answers the shortcuts first; every decision is made here or
in the modules it dispatches to: the routes (``_login``, ``_bearer``, ``_backchannel``), the
session's refresh (``_refresh``) and cookies (``_session_cookies``), the identity
(``_identity``), the answers to ``/k_jwks`` (``_jwks``) and to a request that needs a signed-in
user (``_refusals``), with the types of ``_steps`` and the helpers of ``_http``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Generator, Mapping
from dataclasses import replace
from string import Template
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from adapter.config import AdapterConfig
from adapter.errors import ProviderError, StoreError
from adapter.keys.keyring import KeyRing
from adapter.protocol.dpop import DPoPKey, ProofMemory
from adapter.protocol.tokens import ClaimRules, RefusedTokens, ValidatedTokenCache, id_token_rules
from adapter.web._access import PublicPaths, forbidden_response, refusal, rule_for
from adapter.web._backchannel import backchannel_logout
from adapter.web._bearer import bearer, dpop_challenge
from adapter.web._decisions import DecisionCache
from adapter.web._dpop import dpop_request
from adapter.web._frontchannel import frontchannel_logout
from adapter.web._http import (
    RAW_PATH_SAFE,
    is_preflight,
    safe_return_path,
    text,
    with_cookies,
)
from adapter.web._identity import identity_from_claims
from adapter.web._jwks import JwksAnswers
from adapter.web._login import callback, login, logout
from adapter.web._pages import error_page
from adapter.web._refresh import current_session
from adapter.web._refusals import Refusals
from adapter.web._session_cookies import SessionCookies, Sharing
from adapter.web._session_decisions import first_seen, remember, signed_in
from adapter.web._step_up import step_up_answer, step_up_needed
from adapter.web._steps import (
    Authorizer,
    Handling,
    Identity,
    Outcome,
    Proceed,
    Respond,
    Step,
    TokenExchanger,
    WebRequest,
)
from adapter.web.session import EndedSessions, ServerLogouts, Session, SessionCodec

if TYPE_CHECKING:
    from adapter.web._enforcer import PolicyEnforcer

__all__ = ["WebCore"]

log = logging.getLogger(__name__)
BEARER_REUSE = 300  # seconds a bearer decision is reused at most (the token's exp comes first)
MAX_BEARER_DECISION_BYTES = 8 * 1024 * 1024


class WebCore:
    """Everything the middleware decides in full, for one configuration and key ring."""

    def __init__(
        self,
        config: AdapterConfig,
        ring: KeyRing,
        fallback_session_key: bytes | None = None,
        ended: EndedSessions | None = None,
        logouts: ServerLogouts | None = None,
        *,
        sharing: Sharing | None = None,
        decisions: DecisionCache[Proceed] | None = None,
        proofs: ProofMemory | None = None,
        exchanger: TokenExchanger | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.config = config
        self.exchanger = exchanger  # the shell's client: identity.exchange (token exchange)
        self.authorizer = authorizer  # the shell's: identity.has_permission (policy enforcer)
        self.ring = ring
        self.web = web = config.web
        # Remembered outcomes by session-cookie value (the shell's, outliving reloads).
        self.decisions = decisions if decisions is not None else DecisionCache()
        self.decisions_epoch = self.decisions.epoch  # this configuration's (see remember)
        codec = _session_codec(config, fallback_session_key)
        ended = ended if ended is not None else EndedSessions()
        self.cookies = SessionCookies(config, codec, ended, self.decisions, logouts, sharing)
        self.validated = ValidatedTokenCache()
        self.introspected_roles = ValidatedTokenCache()  # roles-from: the server's, per token
        # Bearer requests decided before, by token: the identity is built once per token.
        self.bearer_decisions: DecisionCache[Proceed] = DecisionCache(MAX_BEARER_DECISION_BYTES)
        self.refused = RefusedTokens()
        # DPoP proofs used here (without Redis): the shell's, so a reload forgets none.
        self.proofs = proofs if proofs is not None else ProofMemory()
        self.audiences = config.token_audiences or (config.client_id,)
        self.bearer_rules = ClaimRules(
            config.issuer,
            audience=self.audiences if config.verify_token_audience else None,
            leeway=config.clock_skew,
        )
        self.jwks_path = web.jwks_path
        self.jwks = JwksAnswers(ring, config.tenant)  # reported under its tenant (metrics)
        self.refusals = Refusals(config.client_id, web.login_path)  # 401 / login redirect
        self.error_template = Template(web.error_page) if web.error_page else None
        self._routes = {
            web.login_path: login,
            web.callback_path: callback,
            web.logout_path: logout,
            web.backchannel_logout_path: backchannel_logout,
        }
        if web.frontchannel_logout:  # off by default: see _frontchannel
            self._routes[web.frontchannel_logout_path] = frontchannel_logout
        self.own_paths = frozenset({web.jwks_path, *self._routes})
        self._form_paths = frozenset({web.logout_path, web.backchannel_logout_path})
        self._public = PublicPaths(web.public_paths, web.access_rules)
        block = config.policy_enforcer  # Keycloak Authorization Services (_enforcer)
        self.enforcer: PolicyEnforcer | None = None
        if block is not None and block.enforced:  # its modules: loaded with the state
            from adapter.web._enforcer import PolicyEnforcer

            self.enforcer = PolicyEnforcer(config, block)

    # -- entry point --------------------------------------------------------------------------

    def handle(self, request: WebRequest) -> Handling:
        """Decide what to do with ``request`` (see the module docstring); a session store that
        cannot be reached (Redis down) is a 503, as a page, JSON or text like every error."""
        try:
            return (yield from self._decide(request))
        except StoreError:  # logged by the store, once per outage
            message = "sessions are unavailable; try again in a moment"
            return error_page(
                request, 503, "Sign-in is unavailable", message, self.web.login_path, [],
                self.error_template,
                retry=request.root_path + safe_return_path(request.raw_path or request.path),
            )  # fmt: skip

    def _decide(self, request: WebRequest) -> Handling:
        web = self.web
        path = request.path
        if path == web.jwks_path:
            answer = self.jwks.answer(request.method, request.headers.get("if-none-match"))
            return answer or text(405, "method not allowed", [("Allow", "GET, HEAD")])
        route = self._routes.get(path)
        if route is not None:
            if self.config.bearer_only:
                return text(404, "not found (bearer-only: no browser login here)", [])
            try:
                return (yield from route(self, request))
            except ProviderError as exc:  # the server is down: say so to the person, too
                log.warning("identity server failure: %s", exc)
                message = "the identity server could not be reached; try again in a moment"
                return error_page(
                    request, 502, "Sign-in is unavailable", message, web.login_path, [],
                    self.error_template,
                )  # fmt: skip
        if is_preflight(request):
            # A preflight carries no identity, whatever it carries (browsers send none): the
            # app's CORS answers, the shells keep only its CORS headers (never a body).
            return Proceed(None, preflight=True)
        authorization = request.headers.get("authorization")
        if authorization is not None and self.web.dpop != "off":
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "dpop" and token.strip():  # RFC 9449: a proof of its key
                return (yield from dpop_request(self, request, token.strip()))
        if authorization is not None or self.config.bearer_only:
            return (yield from bearer(self, request, authorization))
        return (yield from self._with_session(request))

    def _with_session(self, request: WebRequest) -> Handling:
        # A check added here must be one :meth:`first_seen` cannot skip: it decides a session
        # cookie from the cookie alone where nothing below would do more (a property test holds
        # the two together: tests/unit/test_fast_paths.py).
        public = self.is_public(request.path, request.method)
        since = self.decisions.generation  # remembered only if nothing clears it meanwhile
        try:
            session, cookies = yield from current_session(self, request, refresh=not public)
        except StoreError:
            if not public:
                raise  # 503: the session exists, it cannot be read now
            session, cookies = None, []  # a public page is served anyway, anonymously
        if session is not None:
            if request.websocket and not _origin_allowed(self, request):
                return text(403, "websocket from another origin refused", cookies)
            outcome = signed_in(self, session, cookies)
            forbidden = self.forbidden(request, outcome.identity)
            if forbidden is not None:
                return with_cookies(forbidden, cookies)
            enforced = yield from self.enforce(request, outcome.identity, bearer=False)
            if isinstance(enforced, Respond):
                return with_cookies(enforced, cookies)
            if not cookies:  # remembered without this path's permissions (entry asks again)
                self._remember(request, session, outcome, since)
            return outcome if enforced is outcome.identity else replace(outcome, identity=enforced)
        if public:
            return Proceed(None, cookies)
        return self._unauthenticated(request, cookies)

    def cached_bearer(self, authorization: str) -> Proceed | None:
        """The outcome of an earlier request with this bearer token, until the token expires
        (an introspected one: a minute at most). The shells ask this first for requests with
        ``Authorization`` on paths that are not the adapter's own and no ``[[access]]`` rule
        covers; anything else (a new token, a refused one) takes the full path."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.bearer_decisions.get(token.strip())

    def remember_bearer(self, token: str, claims: Mapping[str, Any], outcome: Proceed) -> None:
        """Remember a bearer token's outcome until it expires (never past BEARER_REUSE)."""
        exp = claims.get("exp")
        now = time.time()
        deadline = min(float(exp), now + BEARER_REUSE) if isinstance(exp, int | float) else now
        if deadline > now:
            self.bearer_decisions.put(token, token, outcome, deadline, size=3 * len(token))

    def guarded(self, path: str, method: str) -> bool:
        """Whether an ``[[access]]`` rule covers this request (the method in any case)."""
        return bool(self.web.access_rules) and (
            rule_for(self.web.access_rules, path, method) is not None
        )

    def may_reuse(self, path: str, method: str) -> bool:
        """Whether a remembered decision (a session cookie or bearer token seen before) may
        answer this request: never on the adapter's own paths, for an ``OPTIONS`` (a preflight
        carries no identity) or where an ``[[access]]`` rule must be checked. ``method`` is
        upper case (the shells normalise it)."""
        return method != "OPTIONS" and path not in self.own_paths and not self.guarded(path, method)

    def forbidden(
        self, request: WebRequest, identity: Identity | None, proven: bool = False
    ) -> Respond | None:
        """403 when an ``[[access]]`` rule asks for what ``identity`` does not hold; 401 with
        a DPoP challenge where the rule asks for DPoP (``dpop = true``) and the request did
        not prove a key (``proven``: a DPoP token with its proof); a step-up (``_step_up``)
        where it asks for a stronger or more recent sign-in than the identity's."""
        if identity is None or not self.web.access_rules:
            return None
        rule = rule_for(self.web.access_rules, request.path, request.method)
        if rule is not None and rule.dpop and not proven:
            log.info("access refused: %s takes DPoP-bound tokens only", rule.describe())
            return dpop_challenge(request, "invalid_token", "a DPoP token and proof are required")
        if rule is None:
            return None
        refused = refusal(identity, rule.requirement)
        if refused is not None:
            log.info("access refused (%s missing: %s)", refused.kind, ", ".join(refused.missing))
            return forbidden_response(request, identity, refused, self.web.logout_path)
        step = step_up_needed(rule.requirement, identity.claims, self.config.clock_skew)
        if step is None:
            return None
        log.info("step-up asked: %s needs a stronger or more recent sign-in", rule.describe())
        return step_up_answer(request, step, self.web.login_path)

    def enforce(
        self, request: WebRequest, identity: Identity | None, *, bearer: bool
    ) -> Generator[Step, Any, Identity | Respond | None]:
        """The policy enforcer's verdict after ``[[access]]`` (:mod:`adapter.web._enforcer`):
        the identity (with the permissions the server granted) or the answer that denies the
        request; public paths and requests without an identity are not enforced."""
        enforcer = self.enforcer
        if enforcer is None or identity is None or self.is_public(request.path, request.method):
            return identity
        return (yield from enforcer.enforce(request, identity, bearer=bearer))

    def wants_form(self, method: str, path: str) -> bool:
        """Whether the shell must read a form body for this request (the logout POSTs only)."""
        return method == "POST" and path in self._form_paths

    def wants_body(self, path: str) -> bool:
        """Whether the shell must read this request's body for the policy enforcer's claims
        (``WebRequest.body``; the app then gets the same bytes)."""
        return self.enforcer is not None and self.enforcer.wants_body(path)

    def first_seen(self, value: str | bytes) -> Proceed | None:
        """The outcome for a session cookie not decided before, where opening it is all the
        full path would do (:func:`~adapter.web._session_decisions.first_seen`; never under
        the policy enforcer, whose verdict it does not know). The entry asks on a miss."""
        return None if self.enforcer is not None else first_seen(self, value)

    def _remember(
        self, request: WebRequest, session: Session, outcome: Proceed, since: int
    ) -> None:
        value = request.cookies.get(self.cookies.names(request)[0])
        if value is not None:
            remember(self, value, session, outcome, since)

    # -- identity ---------------------------------------------------------------------------

    def identity_from_claims(
        self,
        claims: Mapping[str, Any],
        access_token: str | None = None,
        id_token: str | None = None,
        csrf_token: str | None = None,
        scope: str | None = None,
        dpop_key: DPoPKey | None = None,
    ) -> Identity:
        """The identity the app sees for these claims (a session's, or a bearer token's)."""
        return identity_from_claims(
            self.config, claims, access_token, id_token, csrf_token, scope, dpop_key,
            self.exchanger, self.authorizer if self.enforcer is not None else None,
        )  # fmt: skip

    # -- what the route modules share -------------------------------------------------------

    def id_token_rules(self, nonce: str | None) -> ClaimRules:
        config = self.config
        return id_token_rules(config.issuer, config.client_id, config.clock_skew, nonce)

    def is_public(self, path: str, method: str) -> bool:
        """Whether an anonymous request may pass here (``_access.PublicPaths``)."""
        return self._public.covers(path, method)

    def redirect_uri(self, request: WebRequest) -> str:
        """``redirect-uri`` when configured, else the callback under the app's root."""
        callback_path = request.root_path + self.web.callback_path
        return self.web.redirect_uri or self.absolute(request, callback_path)

    def absolute(self, request: WebRequest, path: str) -> str:
        scheme, host = self.cookies.origin(request)
        return f"{scheme}://{host}{path}"

    def _unauthenticated(self, request: WebRequest, cookies: list[str]) -> Outcome:
        headers = request.headers
        answer = self.refusals.answer(
            request.method,
            request.raw_path or quote(request.path, safe=RAW_PATH_SAFE),
            request.query,
            request.root_path,
            headers.get("accept", ""),
            headers.get("sec-fetch-mode"),
            headers.get("x-requested-with"),
        )
        if not cookies:
            return answer
        return with_cookies(answer, cookies)


def _origin_allowed(core: WebCore, request: WebRequest) -> bool:
    """A cookie-authenticated websocket must come from this app's pages (or a configured
    origin): browsers send cookies with cross-site websocket handshakes (CSWSH)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser: nobody else's cookies can be riding along
    scheme, host = core.cookies.origin(request)
    claimed = origin.strip().lower()
    if claimed == f"{scheme}://{host}".lower() or claimed in core.web.websocket_origins:
        return True
    log.info("websocket refused: its Origin is not this app's (%s)", claimed[:100])
    return False


def _session_codec(config: AdapterConfig, fallback_key: bytes | None) -> SessionCodec:
    """The session cookies' codec: the configured secrets (the first seals), else the shell's
    key for this process. The app's identity is sealed in: apps sharing a session-secret
    never swap sessions, nor do the tenants of one app (their name too)."""
    keys = [s.reveal().encode() for s in config.web.session_secrets]
    if not keys:
        keys = [fallback_key or secrets.token_bytes(32)]
    context = f"{config.client_id}\0{config.issuer}"
    if config.tenant is not None:
        context += f"\0tenant\0{config.tenant}"
    return SessionCodec(keys, context=context)
