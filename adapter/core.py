"""Framework-neutral request handling: what the middleware does with each request.

:meth:`WebCore.handle` takes a :class:`WebRequest` and is a generator: it yields the I/O it
needs (server metadata, server keys, a protocol flow, a token refresh) as :class:`Step` objects
and returns an :data:`Outcome`: either a response to send (redirect, 401, JWKS ...) or
:class:`Proceed` to call the app with an identity. The ASGI and WSGI shells only translate
requests and responses and drive the steps with their own client; every decision is made here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

from adapter import flows
from adapter._decisions import DecisionCache
from adapter.config import AdapterConfig
from adapter.errors import AdapterError, ProviderError, TokenError, ValidationError
from adapter.flows import Flow
from adapter.jose import ASYMMETRIC_ALGORITHMS, MAX_ISSUED_TOKEN_LENGTH, MAX_TOKEN_LENGTH, PublicKey
from adapter.keys.keyring import KeyRing
from adapter.provider import ProviderMetadata, supported_algorithms
from adapter.session import (
    WARN_CHUNKS,
    EndedSessions,
    MemoryStore,
    Session,
    SessionCodec,
    SessionTooLarge,
    chunk_names,
    join_value,
    split_value,
)
from adapter.tokens import (
    AudienceMismatch,
    ClaimRules,
    RefusedTokens,
    TokenSet,
    ValidatedTokenCache,
    check_access_token_type,
    check_claims,
    check_introspected,
    freeze,
    id_token_rules,
    parse_signed,
    verified_claims,
)

log = logging.getLogger("adapter")
LOGIN_COOKIE = "oidc_login"
HOST_PREFIX = "__Host-"  # https at the site root: the browser pins the cookie to this origin
_ROLE_CLAIMS = ("realm_access", "resource_access")
LOGIN_MAX_AGE = 600  # seconds a login may take at the server
_MAX_PENDING_LOGINS = 3  # logins started in other tabs that may still come back
REVOKE_TIMEOUT = 2.0  # seconds a logout waits for the server to revoke the refresh token


# --- what the shells hand in and get back ----------------------------------------------------


@dataclass(frozen=True)
class WebRequest:
    """The parts of an HTTP request the adapter looks at (header names lower case)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    scheme: str = "http"
    host: str = "localhost"
    form: Mapping[str, str] = field(default_factory=dict)  # only for the logout POST
    raw_path: str | None = None  # the path as sent (percent-encoded), when the server gives it
    websocket: bool = False  # a websocket handshake (scheme http/https as for the page)


@dataclass(frozen=True)
class Respond:
    """Answer the request without calling the app."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @cached_property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as the wire (and ASGI) wants them, encoded once per response object."""
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]


@dataclass(frozen=True)
class Proceed:
    """Call the app; add ``set_cookies`` to its response."""

    identity: Identity | None
    set_cookies: list[str] = field(default_factory=list)


Outcome = Respond | Proceed


@dataclass(frozen=True)
class Identity:
    """The signed-in user (or bearer token's subject), as the app sees it.

    Shaped like Starlette's ``BaseUser`` (``is_authenticated``, ``display_name``,
    ``identity``), so ``request.user`` works there; WSGI apps read it from the environ.
    """

    claims: Mapping[str, Any]
    display_name: str
    roles: frozenset[str]
    client_roles: frozenset[str]
    scopes: frozenset[str]
    access_token: str | None = None
    id_token: str | None = field(default=None, repr=False)
    csrf_token: str | None = field(default=None, repr=False)

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def identity(self) -> str:
        return str(self.claims.get("sub", ""))

    def __repr__(self) -> str:
        return f"Identity(sub={self.identity!r}, roles={sorted(self.roles)!r})"


# --- I/O the core asks the shell to perform --------------------------------------------------


@dataclass(frozen=True)
class NeedMetadata:
    """Yield to get the server's :class:`ProviderMetadata`."""


@dataclass(frozen=True)
class NeedKeys:
    """Yield to get the server's keys for ``kid`` and ``alg`` (refetched once if unknown)."""

    kid: str | None
    alg: str


@dataclass(frozen=True)
class NeedFlow:
    """Yield to run a protocol flow with client authentication; get its result.

    ``timeout`` bounds the whole exchange tighter than the configured timeouts (best-effort
    calls such as the revocation at logout)."""

    flow: Flow[Any]
    timeout: float | None = None


@dataclass(frozen=True)
class NeedRefresh:
    """Yield to run a session's refresh ``flow``, one refresh per ``key`` in flight.

    The shell remembers the outcome briefly (a failure too, as a back-off). With ``wait`` false
    (the access token is still valid) it answers ``None`` at once when another request of the
    session is refreshing: this one goes on with the tokens it has."""

    key: str
    flow: Flow[TokenSet]
    wait: bool = True


@dataclass(frozen=True)
class NeedIntrospection:
    """Yield to introspect a token; concurrent requests with the same ``key`` share one call."""

    key: str
    flow: Flow[dict[str, Any]]


Step = NeedMetadata | NeedKeys | NeedFlow | NeedRefresh | NeedIntrospection
Handling = Generator[Step, Any, Outcome]


# --- the core ---------------------------------------------------------------------------------


class WebCore:
    """Everything the middleware decides, for one configuration and key ring."""

    def __init__(
        self,
        config: AdapterConfig,
        ring: KeyRing,
        memory_store: MemoryStore | None = None,
        fallback_session_key: bytes | None = None,
        ended: EndedSessions | None = None,
    ) -> None:
        self.config = config
        self.ring = ring
        self.web = config.web
        keys = [s.reveal().encode() for s in self.web.session_secrets]
        if not keys:
            keys = [fallback_session_key or secrets.token_bytes(32)]
        # The app's identity is sealed in: apps sharing a session-secret never swap sessions.
        self.codec = SessionCodec(keys, context=f"{config.client_id}\0{config.issuer}")
        memory = memory_store if memory_store is not None else MemoryStore()
        self.store = memory if self.web.session_store == "memory" else None
        self.ended = ended if ended is not None else EndedSessions()
        self.validated = ValidatedTokenCache()
        self.refused = RefusedTokens()
        self.decisions: DecisionCache[Proceed] = DecisionCache()
        web = self.web
        self.jwks_path = web.jwks_path
        self._own_paths = frozenset(
            {web.jwks_path, web.login_path, web.callback_path, web.logout_path}
        )
        audiences = config.token_audiences or (config.client_id,)
        self._audiences = audiences
        self._bearer_rules = ClaimRules(
            config.issuer,
            audience=audiences if config.verify_token_audience else None,
            leeway=config.clock_skew,
        )
        fixed = urlsplit(web.redirect_uri).scheme == "https" if web.redirect_uri else None
        self._fixed_https: bool | None = fixed  # the origin's scheme, when redirect-uri says it
        self._session_names = {
            https: (HOST_PREFIX if https else "") + web.session_cookie for https in (False, True)
        }
        self._warned_large = False

    # -- entry point --------------------------------------------------------------------------

    def handle(self, request: WebRequest) -> Handling:
        """Decide what to do with ``request`` (see the module docstring)."""
        web = self.web
        path = request.path
        if path == web.jwks_path:
            return self._jwks(request)
        if path in (web.login_path, web.callback_path, web.logout_path):
            if self.config.bearer_only:
                return _text(404, "not found (bearer-only: no browser login here)", [])
            if path == web.login_path:
                return (yield from self._login(request))
            if path == web.callback_path:
                return (yield from self._callback(request))
            return (yield from self._logout(request))
        authorization = request.headers.get("authorization")
        if authorization is None and _is_preflight(request):
            return Proceed(None)  # a CORS preflight carries no credentials: the app's CORS answers
        if authorization is not None or self.config.bearer_only:
            return (yield from self._bearer(request, authorization))
        public = self._is_public(path)
        session, cookies = yield from self._current_session(request, refresh=not public)
        if session is not None:
            if request.websocket and not self._origin_allowed(request):
                return _text(403, "websocket from another origin refused", cookies)
            outcome = Proceed(self._identity(session), cookies)
            if not cookies:
                self._remember(request, session, outcome)
            return outcome
        if public:
            return Proceed(None, cookies)
        return self._unauthenticated(request, cookies)

    def cached_session(self, cookie_header: str, https: bool) -> Proceed | None:
        """The outcome of an earlier request with this session cookie, while it holds.

        A session request is decided once (decrypt, decompress, parse, build the identity) and
        then remembered by its session cookie's value until its token needs a refresh, the
        session ends, or a minute passes; the shells ask this first, for paths that are not the
        adapter's own and requests without ``Authorization``. ``https`` is the request's scheme
        (it picks the cookie name). Server-side sessions are not remembered: a logout there must
        end them at once.
        """
        name = self._session_names[https if self._fixed_https is None else self._fixed_https]
        value = cookie_value(cookie_header, name)
        return self.decisions.get(value) if value is not None else None

    def is_own_path(self, path: str) -> bool:
        """Whether ``path`` is one of the routes the middleware answers itself."""
        return path in self._own_paths

    def _remember(self, request: WebRequest, session: Session, outcome: Proceed) -> None:
        if self.store is not None or self.config.bearer_only:
            return
        value = request.cookies.get(self._names(request)[0])
        if value is None or "~" in value[:3]:
            return  # split across cookies: rare and large, decided in full each time
        now = time.time()
        deadline = min(now + 60, int(session.created_at) + self.web.session_max_age)
        if session.expires_at is not None:
            deadline = min(deadline, session.expires_at - self._refresh_margin)
        if deadline > now:
            self.decisions.put(value, session.sid, outcome, deadline, size=3 * len(value))

    def wants_form(self, method: str, path: str) -> bool:
        """Whether the shell must read a form body for this request (the logout POST only)."""
        return method == "POST" and path == self.web.logout_path

    # -- /k_jwks ----------------------------------------------------------------------------

    def _jwks(self, request: WebRequest) -> Respond:
        response = self.jwks_response(request.method, request.headers.get("if-none-match"))
        return response or _text(405, "method not allowed", [("Allow", "GET, HEAD")])

    def jwks_response(self, method: str, if_none_match: str | None) -> Respond | None:
        """The ``/k_jwks`` answer (``None``: not GET/HEAD). The objects are built once per
        key ring, so the shells can send them on their fast path without any other work."""
        if method not in ("GET", "HEAD"):
            return None
        ok, head, not_modified = self._jwks_responses
        if if_none_match and (
            if_none_match == self.ring.etag or self.ring.etag in _etags(if_none_match)
        ):
            return not_modified
        return ok if method == "GET" else head

    @cached_property
    def _jwks_responses(self) -> tuple[Respond, Respond, Respond]:
        etag, body = self.ring.etag, self.ring.jwks_bytes
        common = [("ETag", etag), ("Cache-Control", "public, max-age=60")]
        full = [*common, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        return Respond(200, full, body), Respond(200, full), Respond(304, common)

    # -- login ------------------------------------------------------------------------------

    def _login(self, request: WebRequest) -> Handling:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
        target = safe_return_path(_query(request).get("next", "/"))
        metadata: ProviderMetadata = yield NeedMetadata()
        redirect_uri = self._redirect_uri(request)
        login = flows.authorization_request(
            metadata.endpoint("authorization_endpoint"),
            self.config.client_id,
            redirect_uri,
            self.web.scope,
        )
        pending = [
            p for p in self._pending_logins(request) if time.time() - p.get("t", 0) < LOGIN_MAX_AGE
        ][-(_MAX_PENDING_LOGINS - 1) :]
        pending.append(
            {
                "s": login.state,
                "n": login.nonce,
                "v": login.code_verifier,
                "r": redirect_uri,
                "to": target,
                "t": int(time.time()),
            }
        )
        sealed = self.codec.seal({"p": pending}, "login")
        cookie = self._cookie(request, self._names(request)[1], sealed, LOGIN_MAX_AGE)
        return _redirect(login.url, [cookie])

    def _pending_logins(self, request: WebRequest) -> list[dict[str, Any]]:
        value = request.cookies.get(self._names(request)[1])
        document = self.codec.open(value, "login") if value else None
        pending = document.get("p") if document else None
        if not isinstance(pending, list):
            return []
        return [p for p in pending if isinstance(p, dict) and isinstance(p.get("s"), str)]

    # -- callback ---------------------------------------------------------------------------

    def _callback(self, request: WebRequest) -> Handling:
        query = _query(request)
        pending = self._pending_logins(request)
        state = query.get("state")
        login = next((p for p in pending if state and _same(p["s"], state)), None)
        # The state is used once: whatever happens next, it leaves the cookie.
        rest = [p for p in pending if p is not login]
        login_name = self._names(request)[1]
        login_cookie = (
            self._cookie(request, login_name, self.codec.seal({"p": rest}, "login"), LOGIN_MAX_AGE)
            if rest
            else self._expire(request, login_name)
        )
        if login is None or time.time() - login.get("t", 0) > LOGIN_MAX_AGE:
            return _text(400, "login expired or not started here; start again", [login_cookie])
        if query.get("iss", self.config.issuer) != self.config.issuer:  # RFC 9207: mix-up
            return _text(400, "the callback comes from another issuer", [login_cookie])
        if "error" in query:
            reason = query.get("error", "")[:80]
            return _text(401, f"the identity server refused the login ({reason})", [login_cookie])
        code = query.get("code")
        if not code:
            return _text(400, "the callback has no code", [login_cookie])
        metadata: ProviderMetadata = yield NeedMetadata()
        try:
            tokens: TokenSet = yield NeedFlow(
                flows.exchange_code(metadata.token_endpoint, code, login["r"], login["v"])
            )
            if tokens.id_token is None:
                raise ValidationError("the token response has no id_token")
            claims = yield from self._verify(
                tokens.id_token, supported_algorithms(metadata), max_length=MAX_ISSUED_TOKEN_LENGTH
            )
            check_claims(claims, self._id_token_rules(login["n"]))
        except TokenError as exc:
            log.info("login refused by the identity server: %s", exc.error)
            return _text(400, "the login code was refused; start again", [login_cookie])
        except ValidationError as exc:
            log.warning("login refused: %s", exc)
            return _text(401, "the login could not be verified", [login_cookie])
        claims, scope = yield from self._grants(claims, tokens)
        previous = self._load(request)
        if previous is not None:
            self._end(previous)  # a new login ends the old session for good (copies too)
        session = Session.new(
            claims,
            id_token=tokens.id_token,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            scope=scope,
        )
        cookies = [login_cookie, *self._save(request, session)]
        return _redirect(safe_return_path(login.get("to", "/")), cookies)

    def _grants(
        self, claims: dict[str, Any], tokens: TokenSet
    ) -> Generator[Step, Any, tuple[dict[str, Any], str | None]]:
        """The session's claims with the roles of the access token, and the granted scope.

        The access token is what the server grants (Keycloak puts roles there only, with its
        "roles" scope): its role claims replace those of the ID token, at login and after every
        refresh, so a role removed at the server is gone at the next refresh. It is verified
        first; one that is not a JWT (or fails) leaves the ID token's roles.
        """
        access: dict[str, Any] | None = None
        if tokens.access_token.count(".") == 2:
            try:
                access = yield from self._verify(
                    tokens.access_token,
                    ASYMMETRIC_ALGORITHMS,
                    access_token=True,
                    max_length=MAX_ISSUED_TOKEN_LENGTH,
                )
            except (ValidationError, ProviderError) as exc:
                log.info("roles not read from the access token: %s", exc)
        if access is not None:
            claims = {k: v for k, v in claims.items() if k not in _ROLE_CLAIMS}
            claims.update({k: access[k] for k in _ROLE_CLAIMS if k in access})
        scope = tokens.scope
        if scope is None and access is not None and isinstance(access.get("scope"), str):
            scope = access["scope"]
        return claims, scope

    # -- logout -----------------------------------------------------------------------------

    def _logout(self, request: WebRequest) -> Handling:
        if request.method != "POST":
            return _text(405, "log out with a POST (and the CSRF token)", [("Allow", "POST")])
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return _text(403, "cross-site logout refused", [])
        session = self._load(request)
        if session is None:
            # No session cookie came (perhaps a cross-site POST without it): change nothing.
            return _redirect(self.web.post_logout_redirect, [])
        token = request.form.get("csrf") or request.headers.get("x-csrf-token") or ""
        if not _same(token, session.csrf):
            return _text(400, "missing or wrong CSRF token", [])
        # The session ends here first, whatever the identity server does (or fails to) next.
        self._end(session)
        cookies = self._clear(request)
        try:
            metadata: ProviderMetadata = yield NeedMetadata()
        except ProviderError as exc:
            log.warning("logout: the identity server cannot be reached (%s); signed out here", exc)
            return _redirect(self.web.post_logout_redirect, cookies)
        yield from self._revoke(metadata, session)
        if metadata.end_session_endpoint is None:
            return _redirect(self.web.post_logout_redirect, cookies)
        url = flows.end_session_url(
            metadata.end_session_endpoint,
            id_token_hint=session.id_token,
            post_logout_redirect_uri=self._absolute(request, self.web.post_logout_redirect),
            client_id=self.config.client_id,
        )
        return _redirect(url, cookies)

    def _revoke(self, metadata: ProviderMetadata, session: Session) -> Generator[Step, Any, None]:
        """Revoke the session's refresh token (RFC 7009): best effort, in bounded time, so a
        copy of the cookie cannot refresh even where this process's record does not reach."""
        endpoint = metadata.revocation_endpoint
        if session.refresh_token is None or endpoint is None:
            return
        try:
            yield NeedFlow(
                flows.revoke(endpoint, session.refresh_token, "refresh_token"),
                timeout=REVOKE_TIMEOUT,
            )
        except AdapterError as exc:
            log.info("logout: the refresh token was not revoked (%s); the session ended here", exc)

    def _end(self, session: Session) -> None:
        """End ``session`` for good: its record refuses every copy of the cookie until it
        would have expired, and nothing remembered about it is used again."""
        if self.store is not None:
            self.store.delete(session.sid)
        self.ended.end(session.sid, session.created_at + self.web.session_max_age)
        self.decisions.forget_session(session.sid)

    # -- bearer tokens ----------------------------------------------------------------------

    def _bearer(self, request: WebRequest, authorization: str | None) -> Handling:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            if self._is_public(request.path):
                return Proceed(None)
            return self._challenge(None)
        token = token.strip()
        try:
            claims = yield from self._access_token_claims(token)
        except AudienceMismatch as exc:
            log.warning(
                "bearer token refused: its audience %s does not include %s; add an audience "
                "mapper for %r at the identity server, list the audience in token-audiences, or "
                "set verify-token-audience = false",
                list(exc.found) or "(none)",
                list(exc.expected),
                self.config.client_id,
            )
            return self._challenge("invalid_token")
        except ValidationError as exc:
            log.info("bearer token refused: %s", exc)
            return self._challenge("invalid_token")
        identity = self._identity_from_claims(claims, access_token=token)
        return Proceed(identity)

    def _access_token_claims(self, token: str) -> Generator[Step, Any, Mapping[str, Any]]:
        rules = self._bearer_rules
        cached = self.validated.get(token)
        if cached is not None:
            check_claims(cached, rules)
            return cached
        if token.count(".") == 2:
            claims = yield from self._verify(token, ASYMMETRIC_ALGORITHMS, access_token=True)
            check_claims(claims, rules)
        elif self.web.bearer_introspection:
            claims = yield from self._introspected(token, rules)
        else:
            raise ValidationError("not a JWT access token (introspection is off)")
        self.validated.put(token, claims)
        return claims

    def _introspected(self, token: str, rules: ClaimRules) -> Generator[Step, Any, dict[str, Any]]:
        """An opaque token's claims from the server (RFC 7662). A refusal is remembered for a
        few seconds and identical tokens in flight share one call, so junk tokens cannot drive
        one authenticated call to the server each."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValidationError(f"bearer token over the {MAX_TOKEN_LENGTH}-byte limit")
        key = _digest(token)
        metadata: ProviderMetadata = yield NeedMetadata()
        endpoint = metadata.endpoint("introspection_endpoint")
        if key in self.refused:  # checked after the last wait: a refusal that just landed counts
            raise ValidationError("the token was refused moments ago")
        answer = yield NeedIntrospection(key, flows.introspect(endpoint, token, "access_token"))
        try:
            if not answer.get("active"):
                raise ValidationError("the token is not active")
            check_introspected(answer, self._audiences)
            claims = {"iss": self.config.issuer, **answer}
            check_claims(claims, rules)
        except ValidationError:
            self.refused.add(key)
            raise
        # Reused for a minute at most: a revocation at the server shows within a minute.
        exp = claims.get("exp")
        short = time.time() + 60
        claims["exp"] = min(exp, short) if isinstance(exp, int | float) else short
        return claims

    def _challenge(self, error: str | None) -> Respond:
        value = f'Bearer realm="{self.config.client_id}"'
        if error:
            value += f', error="{error}"'
        return _text(401, "authentication required", [("WWW-Authenticate", value)])

    # -- sessions ---------------------------------------------------------------------------

    def _current_session(
        self, request: WebRequest, refresh: bool = True
    ) -> Generator[Step, Any, tuple[Session | None, list[str]]]:
        session = self._load(request)
        if session is None:
            stale = [n for n in self._chunk_names(request) if n in request.cookies]
            return None, [self._expire(request, n) for n in stale]
        if not refresh or not self._needs_refresh(session):
            return session, []
        if session.refresh_token is None:
            return None, self._clear(request)
        still_valid = session.expires_at is not None and session.expires_at > time.time()
        try:
            metadata: ProviderMetadata = yield NeedMetadata()
            grant = flows.refresh(metadata.token_endpoint, session.refresh_token)
            key = f"{session.sid}:{_digest(session.refresh_token)}"
            tokens: TokenSet | None = yield NeedRefresh(key, grant, wait=not still_valid)
        except TokenError as exc:
            log.info("session ended: the identity server refused the refresh (%s)", exc.error)
            self._end(session)
            return None, self._clear(request)
        except ProviderError as exc:  # the server is down: the session goes on as it is
            log.warning("token refresh failed, keeping the session for now: %s", exc)
            return session, []
        if tokens is None:  # another request of this session is refreshing; this token works
            return session, []
        if session.sid in self.ended:  # logged out while the refresh was on its way
            return None, self._clear(request)
        try:
            yield from self._refreshed(session, tokens, metadata)
        except ValidationError as exc:
            log.warning("session ended: the refreshed ID token was not accepted (%s)", exc)
            self._end(session)
            return None, self._clear(request)
        self.decisions.forget_session(session.sid)  # its identity (roles) just changed
        cookies = self._save_existing(request, session)
        if cookies is None:  # the server-side session ended meanwhile: no resurrection
            return None, self._clear(request)
        return session, cookies

    def _refreshed(
        self, session: Session, tokens: TokenSet, metadata: ProviderMetadata
    ) -> Generator[Step, Any, None]:
        """Take the refreshed tokens into ``session``: a new ID token is validated as at login
        (same subject, no nonce to match: OpenID Connect Core §12.2), and the roles and scope
        come from the new access token."""
        claims = dict(session.claims)
        if tokens.id_token is not None:
            try:
                fresh = yield from self._verify(
                    tokens.id_token,
                    supported_algorithms(metadata),
                    max_length=MAX_ISSUED_TOKEN_LENGTH,
                )
            except ProviderError as exc:  # the server's keys are out of reach, not a forgery
                log.warning("the refreshed ID token could not be checked now: %s", exc)
            else:
                check_claims(fresh, self._id_token_rules(None))
                if fresh.get("sub") != claims.get("sub"):
                    raise ValidationError("the refreshed ID token names another subject")
                claims = fresh
                session.id_token = tokens.id_token
        session.claims, session.scope = yield from self._grants(claims, tokens)
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

    def _load(self, request: WebRequest) -> Session | None:
        value = join_value(request.cookies, self._names(request)[0])
        document = self.codec.open(value, "session") if value else None
        if document is None:
            return None
        if time.time() - float(document.get("t", 0)) > self.web.session_max_age:
            return None
        if self.store is not None:
            sid = document.get("sid")
            data = self.store.load(sid) if isinstance(sid, str) else None
        else:
            data = document.get("d")
        session = Session.from_dict(data) if isinstance(data, dict) else None
        if session is None or session.sid in self.ended:
            return None
        return session

    def _save_existing(self, request: WebRequest, session: Session) -> list[str] | None:
        """:meth:`_save` for a session that must still exist: ``None`` when a server-side
        session ended while this request was refreshing it (no resurrection)."""
        if self.store is not None and not self.store.replace(session.sid, session.to_dict()):
            return None
        return self._save(request, session, stored=True)

    def _save(self, request: WebRequest, session: Session, stored: bool = False) -> list[str]:
        """The cookies that carry ``session`` (and, server-side, the session saved)."""
        stamp = int(session.created_at)
        if self.store is not None:
            if not stored:
                self.store.save(session.sid, session.to_dict())
            sealed = self.codec.seal({"sid": session.sid, "t": stamp}, "session")
        else:
            sealed = self.codec.seal({"d": session.to_dict(), "t": stamp}, "session")
        name = self._names(request)[0]
        parts = split_value(name, sealed)  # SessionTooLarge: answered 503 with the fix logged
        if len(parts) > WARN_CHUNKS and not self._warned_large:
            self._warned_large = True
            log.warning(
                "a session needs %d cookies (%d bytes): proxies and servers with 8-16 KB header "
                'limits may refuse its requests; set session-store = "memory" (server-side)',
                len(parts),
                len(sealed),
            )
        used = {n for n, _ in parts}
        cookies = [self._cookie(request, n, v, self.web.session_max_age) for n, v in parts]
        cookies += [
            self._expire(request, n)
            for n in self._chunk_names(request)
            if n not in used and n in request.cookies
        ]
        return cookies

    def _clear(self, request: WebRequest) -> list[str]:
        names = [n for n in self._chunk_names(request) if n in request.cookies]
        return [self._expire(request, n) for n in names or [self._names(request)[0]]]

    def _chunk_names(self, request: WebRequest) -> list[str]:
        return chunk_names(self._names(request)[0])

    # -- identity ---------------------------------------------------------------------------

    def _identity(self, session: Session) -> Identity:
        return self._identity_from_claims(
            session.claims,
            access_token=session.access_token,
            id_token=session.id_token,
            csrf_token=session.csrf,
            scope=session.scope,
        )

    def _identity_from_claims(
        self,
        claims: Mapping[str, Any],
        access_token: str | None = None,
        id_token: str | None = None,
        csrf_token: str | None = None,
        scope: str | None = None,
    ) -> Identity:
        realm_access = claims.get("realm_access")
        roles = _strings(realm_access.get("roles") if isinstance(realm_access, dict) else None)
        resource_access = claims.get("resource_access")
        client = (
            resource_access.get(self.config.client_id)
            if isinstance(resource_access, dict)
            else None
        )
        client_roles = _strings(client.get("roles") if isinstance(client, dict) else None)
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

    # -- helpers ----------------------------------------------------------------------------

    def _verify(
        self,
        token: str,
        algorithms: tuple[str, ...],
        access_token: bool = False,
        max_length: int = MAX_TOKEN_LENGTH,
    ) -> Generator[Step, Any, dict[str, Any]]:
        signed = parse_signed(token, algorithms, max_length)
        keys: list[PublicKey] = yield NeedKeys(signed.kid, signed.alg)
        claims = verified_claims(signed, keys)
        if access_token:
            check_access_token_type(signed, claims)
        return claims

    def _id_token_rules(self, nonce: str | None) -> ClaimRules:
        config = self.config
        return id_token_rules(config.issuer, config.client_id, config.clock_skew, nonce)

    def _is_public(self, path: str) -> bool:
        """Public paths: each entry matches itself and, unless it is "/", everything below it."""
        return any(
            path == prefix or (prefix != "/" and path.startswith(prefix.rstrip("/") + "/"))
            for prefix in self.web.public_paths
        )

    def _unauthenticated(self, request: WebRequest, cookies: list[str]) -> Outcome:
        accept = request.headers.get("accept", "")
        fetch_mode = request.headers.get("sec-fetch-mode")
        browser_navigation = request.method in ("GET", "HEAD") and (
            fetch_mode == "navigate"
            if fetch_mode
            else "text/html" in accept or not accept or accept.strip() == "*/*"
        )
        xhr = request.headers.get("x-requested-with", "").lower() == "xmlhttprequest"
        if (
            not browser_navigation
            or xhr
            or ("application/json" in accept and "text/html" not in accept)
        ):
            challenge = self._challenge(None)
            return Respond(challenge.status, challenge.headers + _cookies(cookies), challenge.body)
        path = request.raw_path or quote(request.path, safe="/:@!$&'()*+,;=-._~%")
        target = path + (f"?{request.query}" if request.query else "")
        location = f"{self.web.login_path}?{urlencode({'next': target})}"
        return _redirect(location, cookies)

    def _origin_allowed(self, request: WebRequest) -> bool:
        """A cookie-authenticated websocket must come from this app's pages (or a configured
        origin): browsers send cookies with cross-site websocket handshakes (CSWSH)."""
        origin = request.headers.get("origin")
        if origin is None:
            return True  # not a browser: nobody else's cookies can be riding along
        scheme, host = self._origin(request)
        claimed = origin.strip().lower()
        if claimed == f"{scheme}://{host}".lower() or claimed in self.web.websocket_origins:
            return True
        log.info("websocket refused: its Origin is not this app's (%s)", claimed[:100])
        return False

    def _redirect_uri(self, request: WebRequest) -> str:
        return self.web.redirect_uri or self._absolute(request, self.web.callback_path)

    def _origin(self, request: WebRequest) -> tuple[str, str]:
        """This app's public scheme and host: from ``redirect-uri`` when configured (behind a
        proxy the request's own Host may be an internal one), else from the request."""
        if self.web.redirect_uri:
            parts = urlsplit(self.web.redirect_uri)
            return parts.scheme, parts.netloc
        return request.scheme, request.host

    def _absolute(self, request: WebRequest, path: str) -> str:
        scheme, host = self._origin(request)
        return f"{scheme}://{host}{path}"

    def _https(self, request: WebRequest) -> bool:
        if self._fixed_https is not None:
            return self._fixed_https
        return request.scheme == "https"

    def _names(self, request: WebRequest) -> tuple[str, str]:
        """The session and login cookie names: ``__Host-`` prefixed over https."""
        prefix = HOST_PREFIX if self._https(request) else ""
        return prefix + self.web.session_cookie, prefix + LOGIN_COOKIE

    def _secure(self, request: WebRequest) -> bool:
        """Secure cookies on an https origin, always; on http unless the host is loopback or
        ``ssl-required = "none"`` (which decides what the adapter accepts, not what it sends
        over https)."""
        if self._https(request):
            return True
        if self.config.ssl_required == "none":
            return False
        host = self._origin(request)[1].rsplit(":", 1)[0].strip("[]")
        if host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return True

    def _cookie(self, request: WebRequest, name: str, value: str, max_age: int) -> str:
        secure = "; Secure" if self._secure(request) else ""
        return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"

    def _expire(self, request: WebRequest, name: str) -> str:
        secure = "; Secure" if self._secure(request) else ""
        return f"{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"


# --- small pure helpers ------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class BadRequest(Exception):
    """The request itself is malformed: answered 400 with a short reason, logged at debug."""


def _is_preflight(request: WebRequest) -> bool:
    """A real CORS preflight: ``OPTIONS`` with both ``Origin`` and the method it asks about.
    Any other ``OPTIONS`` is a request like any other (a catch-all app may serve content)."""
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "origin" in headers
        and "access-control-request-method" in headers
    )


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of any text (``compare_digest`` refuses non-ASCII str)."""
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _digest(token: str) -> str:
    """A short fixed-size key for a token: caches and flights never hold a token's bytes."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def cookie_value(header: str, name: str) -> str | None:
    """The first value of cookie ``name`` in a ``Cookie`` header, without parsing the rest
    (the hot path); the same value :func:`parse_cookie_header` would give, quotes aside."""
    marker = name + "="
    start = 0
    while True:
        index = header.find(marker, start)
        if index < 0:
            return None
        if index == 0 or header[index - 1] in " ;\t":
            break
        start = index + 1
    begin = index + len(marker)
    end = header.find(";", begin)
    return (header[begin:] if end < 0 else header[begin:end]).strip()


def safe_return_path(target: object) -> str:
    """``target`` if it is a path on this site, else ``/``: no open redirect.

    Refused: absolute URLs, scheme-relative ``//host``, backslashes (browsers read ``/\\host``
    as ``//host``), control characters, anything not starting with one ``/``.
    """
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if _CONTROL.search(target) or len(target) > 2048:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    # Headers are Latin-1 at best: anything beyond ASCII is percent-encoded, never sent raw.
    return quote(target, safe="/?#[]@!$&'()*+,;=:-._~%")


def _query(request: WebRequest) -> dict[str, str]:
    try:
        parsed = parse_qs(request.query, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        return {}
    return {k: v[0] for k, v in parsed.items()}


def _etags(header: str) -> set[str]:
    return {tag.strip() for tag in header.split(",")} if header else set()


def _strings(value: object) -> frozenset[str]:
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _cookies(cookies: list[str]) -> list[tuple[str, str]]:
    return [("Set-Cookie", c) for c in cookies]


def _redirect(location: str, cookies: list[str]) -> Respond:
    headers = [("Location", location), ("Cache-Control", "no-store"), *_cookies(cookies)]
    return Respond(302, headers)


def _text(status: int, message: str, extra: list[tuple[str, str]] | list[str]) -> Respond:
    headers: list[tuple[str, str]] = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    for item in extra:
        headers.append(("Set-Cookie", item) if isinstance(item, str) else item)
    return Respond(status, headers, message.encode() + b"\n")


def failure_response(error: Exception) -> Respond:
    """What the shells answer when a step failed: 400 for a malformed request, 502/503 for the
    server or the adapter, never a traceback."""
    if isinstance(error, BadRequest):
        log.debug("bad request: %s", error)
        return _text(400, f"bad request: {error}", [])
    if isinstance(error, SessionTooLarge):
        log.error("sign-in failed: %s", error)
        return _text(503, "sign-in is unavailable; try again", [])
    if isinstance(error, ProviderError):
        log.warning("identity server failure: %s", error)
        return _text(502, "the identity server could not be reached; try again", [])
    if isinstance(error, AdapterError):
        log.warning("adapter error: %s", error)
        return _text(502, "sign-in is unavailable; try again", [])
    log.error("unexpected error in the adapter (%s)", type(error).__name__)
    return _text(503, "sign-in is unavailable; try again", [])


def drive(handling: Handling, perform: Callable[[Step], Any]) -> Outcome:
    """Run ``handling`` to its outcome with a synchronous ``perform`` for each step.

    Failures of a step are thrown back into the handling generator, so the core decides what
    they mean (a refused refresh ends a session, a refused code is a 400 ...).
    """
    try:
        step = next(handling)
        while True:
            try:
                result = perform(step)
            except AdapterError as error:
                step = handling.throw(error)
            else:
                step = handling.send(result)
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


MAX_FORM_BYTES = 16_384  # a logout form is tiny; anything larger is not one


def parse_form(body: bytes) -> dict[str, str]:
    """A urlencoded form body (the logout POST); :class:`BadRequest` when it is not a small
    form (too large, too many fields)."""
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("the form is too large")
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=20)
    except ValueError:
        raise BadRequest("the form has too many fields") from None
    return dict(pairs)


async def drive_async(handling: Handling, perform: Callable[[Step], Awaitable[Any]]) -> Outcome:
    """:func:`drive` for asynchronous shells."""
    try:
        step = next(handling)
        while True:
            try:
                result = await perform(step)
            except AdapterError as error:
                step = handling.throw(error)
            else:
                step = handling.send(result)
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


def parse_cookie_header(header: str) -> dict[str, str]:
    """Cookies from a ``Cookie`` header, leniently: malformed pairs are skipped, first wins."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def current_identity(source: Any) -> Identity | None:
    """The signed-in identity from a WSGI environ, an ASGI scope or a Starlette request."""
    scope = getattr(source, "scope", None) or getattr(source, "environ", None)
    scope = scope or getattr(source, "META", None) or source  # Starlette, Flask, Django
    if isinstance(scope, Mapping):
        identity = scope.get("oidc.identity")
        return identity if isinstance(identity, Identity) else None
    return None
