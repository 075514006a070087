"""Framework-neutral request handling: what the middleware does with each request.

:meth:`WebCore.handle` takes a :class:`WebRequest` and is a generator: it yields the I/O it
needs (server metadata, server keys, a protocol flow, a token refresh) as :class:`Step` objects
and returns an :data:`Outcome`: either a response to send (redirect, 401, JWKS ...) or
:class:`Proceed` to call the app with an identity. The ASGI and WSGI shells only translate
requests and responses and drive the steps with their own client; every decision is made here
or in the route modules it dispatches to (``_login``, ``_bearer``), on the session's cookie side
(``_session_cookies``), with the types of ``_steps`` and the helpers of ``_http``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Generator, Mapping
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

from adapter import _observe
from adapter.config import AdapterConfig
from adapter.config.access_rules import public_overlaps
from adapter.errors import ProviderError, StoreError, TokenError, ValidationError
from adapter.jose import MAX_ISSUED_TOKEN_LENGTH
from adapter.keys.keyring import KeyRing
from adapter.protocol import flows
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import (
    ClaimRules,
    RefusedTokens,
    TokenSet,
    ValidatedTokenCache,
    check_claims,
    freeze,
    id_token_rules,
    verify_jwt,
)
from adapter.web._access import forbidden_response, refusal, requirement_for
from adapter.web._backchannel import backchannel_logout
from adapter.web._bearer import bearer, challenge
from adapter.web._decisions import DecisionCache
from adapter.web._http import (
    MAX_FORM_BYTES,
    MAX_RETURN_PATH,
    BadRequest,
    cookie_span,
    digest,
    etags,
    failure_response,
    is_preflight,
    parse_cookie_header,
    parse_form,
    preflight_header,
    private_headers,
    private_raw_headers,
    safe_return_path,
    text,
    with_cookies,
)
from adapter.web._login import callback, grants, login, logout, revoke
from adapter.web._pages import error_page
from adapter.web._session_cookies import SessionCookies, Sharing
from adapter.web._steps import (
    Handling,
    Identity,
    NeedFlow,
    NeedIntrospection,
    NeedKeys,
    NeedMetadata,
    NeedRefresh,
    NeedShared,
    NeedStore,
    Outcome,
    Proceed,
    Respond,
    SharedRecords,
    Step,
    WebRequest,
    current_identity,
    drive,
    drive_async,
)
from adapter.web.session import EndedSessions, ServerLogouts, Session, SessionCodec

__all__ = [  # what the shells and the public API take from here
    "MAX_FORM_BYTES",
    "RAW_PATH_SAFE",
    "BadRequest",
    "Identity",
    "NeedFlow",
    "NeedIntrospection",
    "NeedKeys",
    "NeedMetadata",
    "NeedRefresh",
    "NeedShared",
    "NeedStore",
    "Outcome",
    "Proceed",
    "Respond",
    "SharedRecords",
    "Sharing",
    "Step",
    "WebCore",
    "WebRequest",
    "current_identity",
    "drive",
    "drive_async",
    "failure_response",
    "parse_cookie_header",
    "parse_form",
    "preflight_header",
    "private_headers",
    "private_raw_headers",
    "safe_return_path",
]

log = logging.getLogger("adapter")
RAW_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
BEARER_REUSE = 300  # seconds a bearer decision is reused at most (the token's exp comes first)
MAX_BEARER_DECISION_BYTES = 8 * 1024 * 1024
_LOGIN_REDIRECTS_KEPT = 512
# redirect answers remembered per state, by target
STALE_TOKEN_GRACE = 300  # seconds a session may run on an expired token while refreshes fail


class WebCore:
    """Everything the middleware decides, for one configuration and key ring."""

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
    ) -> None:
        self.config = config
        self.ring = ring
        self.web = web = config.web
        keys = [s.reveal().encode() for s in web.session_secrets]
        if not keys:
            keys = [fallback_session_key or secrets.token_bytes(32)]
        # The app's identity is sealed in: apps sharing a session-secret never swap sessions.
        codec = SessionCodec(keys, context=f"{config.client_id}\0{config.issuer}")
        # Remembered outcomes by session-cookie value (the shell's, outliving reloads).
        self.decisions = decisions if decisions is not None else DecisionCache()
        ended = ended if ended is not None else EndedSessions()
        self.cookies = SessionCookies(config, codec, ended, self.decisions, logouts, sharing)
        self.validated = ValidatedTokenCache()
        # Bearer requests decided before, by token: the identity is built once per token.
        self.bearer_decisions: DecisionCache[Proceed] = DecisionCache(MAX_BEARER_DECISION_BYTES)
        self.refused = RefusedTokens()
        self.audiences = config.token_audiences or (config.client_id,)
        self.bearer_rules = ClaimRules(
            config.issuer,
            audience=self.audiences if config.verify_token_audience else None,
            leeway=config.clock_skew,
        )
        self.jwks_path = web.jwks_path
        self._build_jwks_answers()
        self.error_template = Template(web.error_page) if web.error_page else None
        self._routes = {
            web.login_path: login,
            web.callback_path: callback,
            web.logout_path: logout,
            web.backchannel_logout_path: backchannel_logout,
        }
        self._own_paths = frozenset({web.jwks_path, *self._routes})
        self._form_paths = frozenset({web.logout_path, web.backchannel_logout_path})
        # Public paths as one set lookup and one C-level prefix test (every request asks).
        self._public_exact = frozenset(web.public_paths)
        self._public_prefixes = tuple(p.rstrip("/") + "/" for p in web.public_paths if p != "/")
        # [[access]] rules that cover part of a public path: there the rule wins (a guarded
        # path is never anonymous); `config check` names each of them.
        self._guarded_public = tuple(
            dict.fromkeys(rule for rule, _ in public_overlaps(web.access_rules, web.public_paths))
        )
        self._private = web.private_responses
        # Requests with no credentials at all, decided without a WebRequest (the shells ask
        # anonymous_* first): the answers they get are built once per state, or per target.
        self._anonymous_through = not config.bearer_only
        self.anonymous_401 = challenge(config.client_id, None)
        self._login_redirects: dict[tuple[str, str], Respond] = {}
        self._cookie_names: dict[tuple[bool, str], bytes] = {}
        self._root_cookie_names = {
            https: self.cookies.session_name(https, "").encode("latin-1") for https in (False, True)
        }

    # -- entry point --------------------------------------------------------------------------

    def handle(self, request: WebRequest) -> Handling:
        """Decide what to do with ``request`` (see the module docstring)."""
        web = self.web
        path = request.path
        if path == web.jwks_path:
            return self._jwks(request)
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
        if authorization is not None or self.config.bearer_only:
            return (yield from bearer(self, request, authorization))
        return (yield from self._with_session(request))

    def _with_session(self, request: WebRequest) -> Handling:
        public = self.is_public(request.path, request.method)
        try:
            session, cookies = yield from self._current_session(request, refresh=not public)
        except StoreError:
            if not public:
                raise  # 503: the session exists, it cannot be read now
            session, cookies = None, []  # a public page is served anyway, anonymously
        if session is not None:
            if request.websocket and not self._origin_allowed(request):
                return text(403, "websocket from another origin refused", cookies)
            private = self._private
            outcome = Proceed(
                self._identity(session), cookies, private=private, vary_cookie=private
            )
            forbidden = self.forbidden(request, outcome.identity)
            if forbidden is not None:
                return with_cookies(forbidden, cookies)
            if not cookies:
                self._remember(request, session, outcome)
            return outcome
        if public:
            return Proceed(None, cookies)
        return self._unauthenticated(request, cookies)

    def cached_session(
        self, cookie_header: str | bytes, https: bool, root_path: str = ""
    ) -> Proceed | None:
        """The outcome of an earlier request with this session cookie, while it holds.

        A session request is decided once (decrypt, decompress, parse, build the identity) and
        then remembered by its session cookie's value until its token needs a refresh, the
        session ends, or a minute passes; the shells ask this first, for paths that are not the
        adapter's own and requests without ``Authorization``. ``https`` and ``root_path`` (where
        the app is mounted) pick the cookie's name. ``cookie_header`` is the header as text, or
        as the bytes an ASGI server gives (compared as they are: no decoding on the hot path).
        """
        raw = cookie_header if isinstance(cookie_header, bytes) else _latin1(cookie_header)
        if raw is None:
            return None
        name = self._cookie_name_bytes(https, root_path)
        begin = len(name) + 1
        if (
            raw.startswith(name)
            and raw.startswith(b"=", len(name))
            and len(raw) > begin + 1
            and raw[begin] not in _STRIPPED
            and raw[-1] not in _STRIPPED
        ):
            # The usual header: the session cookie alone, compared whole where it lies (a
            # remembered value holds no ";", so a longer header never matches here).
            remembered = self.decisions.get_in(raw, begin, len(raw))
            if remembered is not None:
                return remembered
        span = cookie_span(raw, name)
        if span is None:
            return None
        begin, end = span
        if end - begin < 2 or raw[begin] in _STRIPPED or raw[end - 1] in _STRIPPED:
            # Spaces or quotes at an edge: the value as the parser reads it (from text).
            value = raw[begin:end].decode("latin-1").strip().strip('"')
            return self.decisions.get(value) if value else None
        return self.decisions.get_in(raw, begin, end)  # compared in place

    def _cookie_name_bytes(self, https: bool, root_path: str) -> bytes:
        if not root_path:  # the usual case, without building a key
            return self._root_cookie_names[https]
        key = (https, root_path)
        name = self._cookie_names.get(key)
        if name is None:
            name = self.cookies.session_name(https, root_path).encode("latin-1")
            if len(self._cookie_names) < 64:  # root paths come from the server, not the client
                self._cookie_names[key] = name
        return name

    def cached_bearer(self, authorization: str) -> Proceed | None:
        """The outcome of an earlier request with this bearer token, until the token expires
        (an introspected one: a minute at most). The shells ask this first for requests with
        ``Authorization`` on paths that are not the adapter's own and no ``[[access]]`` rule
        covers; anything else (a new token, a refused one) takes the full path."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.bearer_decisions.get(token.strip())

    def remembered(
        self,
        method: str,
        path: str,
        authorization: str | None,
        cookie: str | bytes | None,
        https: bool,
        root_path: str = "",
    ) -> Proceed | None:
        """The decision remembered for this request, or ``None`` (the full path decides): a
        bearer token seen before when ``Authorization`` is present (cookies play no part then),
        else a session cookie seen before. Never for ``OPTIONS``, the adapter's own paths or a
        path under an ``[[access]]`` rule (:meth:`may_reuse`). Both shells ask this, in this
        order, so the shortcut's order is written once."""
        if not self.may_reuse(path, method):
            return None
        if authorization is not None:
            return self.cached_bearer(authorization)
        return self.cached_session(cookie, https, root_path) if cookie else None

    def remember_bearer(self, token: str, claims: Mapping[str, Any], outcome: Proceed) -> None:
        """Remember a bearer token's outcome until it expires (never past BEARER_REUSE)."""
        exp = claims.get("exp")
        now = time.time()
        deadline = min(float(exp), now + BEARER_REUSE) if isinstance(exp, int | float) else now
        if deadline > now:
            self.bearer_decisions.put(token, token, outcome, deadline, size=3 * len(token))

    def is_own_path(self, path: str) -> bool:
        """Whether ``path`` is one of the routes the middleware answers itself."""
        return path in self._own_paths

    def guarded(self, path: str, method: str) -> bool:
        """Whether an ``[[access]]`` rule covers this request (the method in any case)."""
        return bool(self.web.access_rules) and (
            requirement_for(self.web.access_rules, path, method) is not None
        )

    def may_reuse(self, path: str, method: str) -> bool:
        """Whether a remembered decision (a session cookie or bearer token seen before) may
        answer this request: never on the adapter's own paths, for an ``OPTIONS`` (a preflight
        carries no identity) or where an ``[[access]]`` rule must be checked. ``method`` is
        upper case (the shells normalise it)."""
        return (
            method != "OPTIONS" and path not in self._own_paths and not self.guarded(path, method)
        )

    def forbidden(self, request: WebRequest, identity: Identity | None) -> Respond | None:
        """403 when an ``[[access]]`` rule asks for what ``identity`` does not hold."""
        if identity is None or not self.web.access_rules:
            return None
        requirement = requirement_for(self.web.access_rules, request.path, request.method)
        refused = refusal(identity, requirement) if requirement is not None else None
        if refused is None:
            return None
        log.info("access refused (%s missing: %s)", refused.kind, ", ".join(refused.missing))
        return forbidden_response(request, identity, refused, self.web.logout_path)

    def wants_form(self, method: str, path: str) -> bool:
        """Whether the shell must read a form body for this request (the logout POSTs only)."""
        return method == "POST" and path in self._form_paths

    def _remember(self, request: WebRequest, session: Session, outcome: Proceed) -> None:
        if self.config.bearer_only or not self.cookies.sharing.live():
            return  # while another process's news could be missed, decide every time
        value = request.cookies.get(self.cookies.names(request)[0])
        if value is None or "~" in value[:3]:
            return  # split across cookies: rare and large, decided in full each time
        now = time.time()
        deadline = min(now + 60, int(session.created_at) + self.web.session_max_age)
        if session.expires_at is not None:
            deadline = min(deadline, session.expires_at - self._refresh_margin)
        if deadline > now:
            self.decisions.put(value, session.sid, outcome, deadline, size=3 * len(value))
            # A logout may have ended the session since it was loaded: it records the end
            # before it forgets the session's decisions, so checking after the put leaves no
            # moment in which an ended session stays remembered.
            cookies = self.cookies
            if cookies.ended.refuses(session.sid, session.created_at) or cookies.logouts.refuses(
                session.claims, session.created_at
            ):
                self.decisions.forget_session(session.sid)

    # -- /k_jwks ----------------------------------------------------------------------------

    def _jwks(self, request: WebRequest) -> Respond:
        response = self.jwks_response(request.method, request.headers.get("if-none-match"))
        return response or text(405, "method not allowed", [("Allow", "GET, HEAD")])

    def jwks_response(self, method: str, if_none_match: str | bytes | None) -> Respond | None:
        """The ``/k_jwks`` answer (``None``: not GET/HEAD), from objects built once per key
        ring. ``if_none_match`` may be the header's bytes as ASGI gives it: the server's two
        usual requests (a fetch without it, a revalidation with the exact ETag) are answered
        first, without decoding anything."""
        if method == "GET" and if_none_match is None:
            if _observe.listening:
                _observe.observer.jwks_answer(200, self.ring.etag)
            return self._jwks_ok
        if method != "GET" and method != "HEAD":
            return None
        matched = if_none_match is not None and (
            if_none_match == self._jwks_etag or self._etag_listed(if_none_match)
        )
        if _observe.listening:
            _observe.observer.jwks_answer(304 if matched else 200, self.ring.etag)
        if matched:
            return self._jwks_not_modified
        return self._jwks_ok if method == "GET" else self._jwks_head

    def _etag_listed(self, if_none_match: str | bytes) -> bool:
        header = (
            if_none_match.decode("latin-1") if isinstance(if_none_match, bytes) else if_none_match
        )
        etag = self.ring.etag
        return bool(header) and (header == etag or etag in etags(header))

    def _build_jwks_answers(self) -> None:
        """The three ``/k_jwks`` answers and the ETag as sent, once per key ring."""
        etag, body = self.ring.etag, self.ring.jwks_bytes
        common = (("ETag", etag), ("Cache-Control", "public, max-age=60"))
        full = (*common, ("Content-Type", "application/json"), ("Content-Length", str(len(body))))
        self._jwks_ok = Respond(200, full, body)
        self._jwks_head = Respond(200, full)
        self._jwks_not_modified = Respond(304, common)
        self._jwks_etag = etag.encode("latin-1")

    # -- sessions and their refresh ---------------------------------------------------------

    def _current_session(
        self, request: WebRequest, refresh: bool = True
    ) -> Generator[Step, Any, tuple[Session | None, list[str]]]:
        cookies = self.cookies
        session = yield from cookies.load(request)
        if session is None:
            return None, cookies.stale(request)
        if not refresh or not self._needs_refresh(session):
            return session, []
        if session.refresh_token is None:
            return None, cookies.clear(request)
        expires_at = session.expires_at or 0.0
        try:
            metadata: ProviderMetadata = yield NeedMetadata()
            grant = flows.refresh(metadata.token_endpoint, session.refresh_token)
            key = f"{session.sid}:{digest(session.refresh_token)}"
            tokens: TokenSet | None = yield NeedRefresh(key, grant, wait=expires_at <= time.time())
        except TokenError as exc:
            _observe.observer.refresh(False)
            log.info("session ended: the identity server refused the refresh (%s)", exc.error)
            yield from cookies.end(session)
            return None, cookies.clear(request)
        except ProviderError as exc:
            _observe.observer.refresh(False)
            if time.time() > expires_at + STALE_TOKEN_GRACE:
                raise  # too long on an expired token: 502 until the server answers again
            log.warning("token refresh failed, keeping the session for now: %s", exc)
            return session, []
        if tokens is None:  # another request of this session is refreshing; this token works
            return session, []
        try:
            yield from self._refreshed(session, tokens, metadata)
        except ValidationError as exc:
            log.warning("session ended: the refreshed ID token was not accepted (%s)", exc)
            yield from cookies.end(session)
            return None, cookies.clear(request)
        _observe.observer.refresh(True)
        self.decisions.forget_session(session.sid)  # its identity (roles) just changed
        saved = yield from cookies.save(request, session, replace=True)
        if saved is None:  # it ended while the refresh was on its way: no resurrection
            yield from revoke(metadata, tokens.refresh_token)
            return None, cookies.clear(request)
        if cookies.sharing.enabled:
            # The others forget the old identity.
            yield NeedShared("changed", sid=session.sid, app=cookies.app)
        return session, saved

    def _refreshed(
        self, session: Session, tokens: TokenSet, metadata: ProviderMetadata
    ) -> Generator[Step, Any, None]:
        """Take the refreshed tokens into ``session``: a new ID token is validated as at login
        (same subject, no nonce to match: OpenID Connect Core §12.2), and the roles and scope
        come from the new access token."""
        claims = dict(session.claims)
        if tokens.id_token is not None:
            try:
                fresh = yield from verify_jwt(
                    tokens.id_token,
                    (self.config.id_token_signing_alg,),
                    max_length=MAX_ISSUED_TOKEN_LENGTH,
                )
            except ProviderError as exc:  # the server's keys are out of reach, not a forgery
                log.warning("the refreshed ID token could not be checked now: %s", exc)
            else:
                check_claims(fresh, self.id_token_rules(None))
                if fresh.get("sub") != claims.get("sub"):
                    raise ValidationError("the refreshed ID token names another subject")
                claims = fresh
                session.id_token = tokens.id_token
        session.claims, session.scope = yield from grants(self, claims, tokens)
        session.access_token = tokens.access_token
        session.refresh_token = tokens.refresh_token or session.refresh_token
        session.expires_at = tokens.expires_at

    @property
    def _refresh_margin(self) -> float:
        return max(self.config.token_minimum_time_to_live, 5)

    def _needs_refresh(self, session: Session) -> bool:
        if session.expires_at is None:
            return False
        return session.expires_at - time.time() <= self._refresh_margin

    # -- identity ---------------------------------------------------------------------------

    def _identity(self, session: Session) -> Identity:
        return self.identity_from_claims(
            session.claims,
            access_token=session.access_token,
            id_token=session.id_token,
            csrf_token=session.csrf,
            scope=session.scope,
        )

    def identity_from_claims(
        self,
        claims: Mapping[str, Any],
        access_token: str | None = None,
        id_token: str | None = None,
        csrf_token: str | None = None,
        scope: str | None = None,
    ) -> Identity:
        """The identity the app sees for these claims (a session's, or a bearer token's)."""
        realm_access = claims.get("realm_access")
        roles = _strings(realm_access.get("roles") if isinstance(realm_access, dict) else None)
        resource_access = claims.get("resource_access")
        client = (
            resource_access.get(self.config.client_id)
            if isinstance(resource_access, dict)
            else None
        )
        client_roles = _strings(client.get("roles") if isinstance(client, dict) else None)
        if self.config.use_resource_role_mappings:
            roles = client_roles  # Keycloak: the client's own roles stand in for realm roles
        granted = scope if scope is not None else claims.get("scope")
        scopes = frozenset(granted.split()) if isinstance(granted, str) else frozenset()
        return Identity(
            claims=freeze(dict(claims)),  # shared by the requests of a session: read-only
            display_name=self._principal(claims),
            roles=roles,
            client_roles=client_roles,
            scopes=scopes | {"authenticated"},
            access_token=access_token,
            id_token=id_token,
            csrf_token=csrf_token,
        )

    def _principal(self, claims: Mapping[str, Any]) -> str:
        """The name the app sees: ``principal-attribute``, else ``sub`` (as Keycloak does).

        Never another claim the user may choose (``preferred_username`` is editable in many
        realms), and ``email`` only when the server says it is verified.
        """
        attribute = self.config.principal_attribute
        value = claims.get(attribute)
        if attribute == "email" and claims.get("email_verified") is not True:
            value = None
        if not isinstance(value, str) or not value:
            value = claims.get("sub")
        return str(value or "")

    # -- what the route modules share -------------------------------------------------------

    def id_token_rules(self, nonce: str | None) -> ClaimRules:
        config = self.config
        return id_token_rules(config.issuer, config.client_id, config.clock_skew, nonce)

    def is_public(self, path: str, method: str) -> bool:
        """Public paths: each entry matches itself and, unless it is "/", everything below it;
        except where an ``[[access]]`` rule covers the request: a guarded path is never
        anonymous, whatever ``public-paths`` says."""
        if not (path in self._public_exact or path.startswith(self._public_prefixes)):
            return False
        return not self._guarded_public or (
            requirement_for(self._guarded_public, path, method) is None
        )

    def anonymous_passes(self, method: str, path: str) -> bool:
        """Whether a request with neither a Cookie nor an Authorization header goes to the app
        as it is, anonymous: what :meth:`handle` decides for it, without building a request.

        True for a public path that is not the adapter's own; never for OPTIONS (a preflight
        is answered by the app's CORS alone, see :meth:`handle`) or in bearer-only mode.
        """
        return (
            self._anonymous_through
            and method != "OPTIONS"
            and path not in self._own_paths
            and self.is_public(path, method)
        )

    def anonymous_refusal(self, method: str, path: str) -> bool:
        """Whether a request without Cookie or Authorization is refused as :meth:`handle`
        refuses it (401 or a redirect to log in, :meth:`unauthenticated`): a protected path."""
        return (
            self._anonymous_through
            and method != "OPTIONS"
            and path not in self._own_paths
            and not self.is_public(path, method)
        )

    def redirect_uri(self, request: WebRequest) -> str:
        """``redirect-uri`` when configured, else the callback under the app's root."""
        callback_path = request.root_path + self.web.callback_path
        return self.web.redirect_uri or self.absolute(request, callback_path)

    def absolute(self, request: WebRequest, path: str) -> str:
        scheme, host = self.cookies.origin(request)
        return f"{scheme}://{host}{path}"

    def _unauthenticated(self, request: WebRequest, cookies: list[str]) -> Outcome:
        headers = request.headers
        answer = self.unauthenticated(
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

    def unauthenticated(
        self,
        method: str,
        raw_path: str,
        query: str,
        root_path: str,
        accept: str,
        fetch_mode: str | None,
        requested_with: str | None,
    ) -> Respond:
        """401 for an API client, a redirect to log in (back to this page) for a browser's
        page navigation. The answers are built once: the 401 per state, each redirect per
        target (bounded), and immutable: a shell hands the server a list of its own."""
        browser_navigation = method in ("GET", "HEAD") and (
            fetch_mode == "navigate"
            if fetch_mode
            else "text/html" in accept or not accept or accept.strip() == "*/*"
        )
        xhr = requested_with is not None and requested_with.lower() == "xmlhttprequest"
        if (
            not browser_navigation
            or xhr
            or ("application/json" in accept and "text/html" not in accept)
        ):
            return self.anonymous_401
        target = raw_path + (f"?{query}" if query else "")
        if len(target) > MAX_RETURN_PATH:  # it would not come back anyway (safe_return_path)
            target = raw_path if len(raw_path) <= MAX_RETURN_PATH else "/"
        key = (root_path, target)
        answer = self._login_redirects.get(key)
        if answer is None:
            # ``next`` is relative to the app's root: a login can only return inside it.
            location = f"{root_path}{self.web.login_path}?{urlencode({'next': target})}"
            answer = Respond(302, (("Location", location), ("Cache-Control", "no-store")))
            if len(self._login_redirects) >= _LOGIN_REDIRECTS_KEPT:
                self._login_redirects.clear()  # bounded: junk paths cannot grow it
            self._login_redirects[key] = answer
        return answer

    def _origin_allowed(self, request: WebRequest) -> bool:
        """A cookie-authenticated websocket must come from this app's pages (or a configured
        origin): browsers send cookies with cross-site websocket handshakes (CSWSH)."""
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser: nobody else's cookies can be riding along
        scheme, host = self.cookies.origin(request)
        claimed = origin.strip().lower()
        if claimed == f"{scheme}://{host}".lower() or claimed in self.web.websocket_origins:
            return True
        log.info("websocket refused: its Origin is not this app's (%s)", claimed[:100])
        return False


# What the cookie parser strips from a value's edges (str.strip() on Latin-1 text, and quotes).
_STRIPPED = frozenset(b'\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0"')


def _latin1(text: str) -> bytes | None:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None  # not a header a server could have sent: the full path decides


def _strings(value: object) -> frozenset[str]:
    if isinstance(value, list | tuple):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()
