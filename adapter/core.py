"""Framework-neutral request handling: what the middleware does with each request.

:meth:`WebCore.handle` takes a :class:`WebRequest` and is a generator: it yields the I/O it
needs (server metadata, server keys, a protocol flow, a token refresh) as :class:`Step` objects
and returns an :data:`Outcome`: either a response to send (redirect, 401, JWKS ...) or
:class:`Proceed` to call the app with an identity. The ASGI and WSGI shells only translate
requests and responses and drive the steps with their own client; every decision is made here.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

from adapter import flows
from adapter.config import AdapterConfig
from adapter.errors import AdapterError, ProviderError, TokenError, ValidationError
from adapter.flows import Flow
from adapter.jose import ASYMMETRIC_ALGORITHMS, PublicKey
from adapter.keys.keyring import KeyRing
from adapter.provider import ProviderMetadata, supported_algorithms
from adapter.session import (
    MemoryStore,
    Session,
    SessionCodec,
    chunk_names,
    join_value,
    split_value,
)
from adapter.tokens import (
    ClaimRules,
    TokenSet,
    ValidatedTokenCache,
    check_access_token_type,
    check_claims,
    freeze,
    id_token_rules,
    parse_signed,
    verified_claims,
)

log = logging.getLogger("adapter")
LOGIN_COOKIE = "oidc_login"
_ROLE_CLAIMS = ("realm_access", "resource_access")
_MAX_DECIDED = 10_000  # remembered session decisions (oldest out first)
_MAX_REMEMBERED_HEADER = 8192  # bytes of Cookie header worth remembering a decision for
LOGIN_MAX_AGE = 600  # seconds a login may take at the server
_MAX_PENDING_LOGINS = 3  # logins started in other tabs that may still come back


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
    """Yield to run a protocol flow with client authentication; get its result."""

    flow: Flow[Any]


@dataclass(frozen=True)
class NeedRefresh:
    """Yield to run a session's refresh ``flow``, one refresh per session in flight."""

    sid: str
    refresh_token: str
    flow: Flow[TokenSet]


Step = NeedMetadata | NeedKeys | NeedFlow | NeedRefresh
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
    ) -> None:
        self.config = config
        self.ring = ring
        self.web = config.web
        keys = [s.reveal().encode() for s in self.web.session_secrets]
        if not keys:
            keys = [fallback_session_key or secrets.token_bytes(32)]
        self.codec = SessionCodec(keys)
        memory = memory_store if memory_store is not None else MemoryStore()
        self.store = memory if self.web.session_store == "memory" else None
        self.validated = ValidatedTokenCache()
        self._decided: dict[str, tuple[float, Proceed]] = {}
        self._decided_lock = threading.Lock()
        web = self.web
        self.jwks_path = web.jwks_path
        self._own_paths = frozenset(
            {web.jwks_path, web.login_path, web.callback_path, web.logout_path}
        )

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
        if authorization is not None or self.config.bearer_only:
            return (yield from self._bearer(request, authorization))
        public = self._is_public(path)
        session, cookies = yield from self._current_session(request, refresh=not public)
        if session is not None:
            outcome = Proceed(self._identity(session), cookies)
            if not cookies:
                self._remember(request.headers.get("cookie"), session, outcome)
            return outcome
        if public:
            return Proceed(None, cookies)
        return self._unauthenticated(request, cookies)

    def cached_session(self, cookie_header: str) -> Proceed | None:
        """The outcome of an earlier request with exactly this ``Cookie`` header, while it holds.

        A session request is decided once (decrypt, decompress, parse, build the identity) and
        then remembered for its cookie until its token needs a refresh, the session ends, or a
        minute passes; the shells ask this first, for paths that are not the adapter's own and
        requests without ``Authorization``. Server-side sessions are not remembered: a logout
        there must end them at once.
        """
        entry = self._decided.get(cookie_header)
        if entry is None:
            return None
        if time.time() >= entry[0]:
            with self._decided_lock:
                self._decided.pop(cookie_header, None)
            return None
        return entry[1]

    def is_own_path(self, path: str) -> bool:
        """Whether ``path`` is one of the routes the middleware answers itself."""
        return path in self._own_paths

    def _remember(self, cookie_header: str | None, session: Session, outcome: Proceed) -> None:
        if cookie_header is None or self.store is not None or self.config.bearer_only:
            return
        if len(cookie_header) > _MAX_REMEMBERED_HEADER:
            return  # padded with junk cookies: not worth the memory (the full path still works)
        now = time.time()
        deadline = min(now + 60, int(session.created_at) + self.web.session_max_age)
        if session.expires_at is not None:
            deadline = min(
                deadline, session.expires_at - max(self.config.token_minimum_time_to_live, 5)
            )
        if deadline <= now:
            return
        with self._decided_lock:  # threaded WSGI servers: one writer at a time
            self._decided[cookie_header] = (deadline, outcome)
            while len(self._decided) > _MAX_DECIDED:
                self._decided.pop(next(iter(self._decided)))

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
        cookie = self._cookie(request, LOGIN_COOKIE, self.codec.seal({"p": pending}, "login"),
                              LOGIN_MAX_AGE)  # fmt: skip
        return _redirect(login.url, [cookie])

    def _pending_logins(self, request: WebRequest) -> list[dict[str, Any]]:
        value = request.cookies.get(LOGIN_COOKIE)
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
        login = next((p for p in pending if state and secrets.compare_digest(p["s"], state)), None)
        # The state is used once: whatever happens next, it leaves the cookie.
        rest = [p for p in pending if p is not login]
        login_cookie = (
            self._cookie(
                request, LOGIN_COOKIE, self.codec.seal({"p": rest}, "login"), LOGIN_MAX_AGE
            )
            if rest
            else self._expire(request, LOGIN_COOKIE)
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
            claims = yield from self._verify(tokens.id_token, supported_algorithms(metadata))
            check_claims(claims, self._id_token_rules(login["n"]))
        except TokenError as exc:
            log.info("login refused by the identity server: %s", exc.error)
            return _text(400, "the login code was refused; start again", [login_cookie])
        except ValidationError as exc:
            log.warning("login refused: %s", exc)
            return _text(401, "the login could not be verified", [login_cookie])
        claims = yield from self._with_access_token_roles(claims, tokens.access_token)
        previous = self._load(request)
        if previous is not None and self.store is not None:
            self.store.delete(previous.sid)  # a new login ends the old session for good
        session = Session.new(
            claims,
            id_token=tokens.id_token,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
        )
        cookies = [login_cookie, *self._save(request, session)]
        return _redirect(safe_return_path(login.get("to", "/")), cookies)

    def _with_access_token_roles(
        self, claims: dict[str, Any], access_token: str
    ) -> Generator[Step, Any, dict[str, Any]]:
        """Keycloak puts roles in the access token only (its "roles" scope): take them there.

        The access token is verified first; one that is not a JWT (or fails) adds nothing.
        """
        if access_token.count(".") != 2 or all(k in claims for k in _ROLE_CLAIMS):
            return claims
        try:
            access = yield from self._verify(access_token, ASYMMETRIC_ALGORITHMS, access_token=True)
        except (ValidationError, ProviderError) as exc:
            log.info("roles not read from the access token: %s", exc)
            return claims
        extra = {k: access[k] for k in _ROLE_CLAIMS if k in access and k not in claims}
        return {**claims, **extra}

    # -- logout -----------------------------------------------------------------------------

    def _logout(self, request: WebRequest) -> Handling:
        if request.method != "POST":
            return _text(405, "log out with a POST (and the CSRF token)", [("Allow", "POST")])
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return _text(403, "cross-site logout refused", [])
        session, _ = yield from self._current_session(request, refresh=False)
        if session is None:
            # No session cookie came (perhaps a cross-site POST without it): change nothing.
            return _redirect(self.web.post_logout_redirect, [])
        token = request.form.get("csrf") or request.headers.get("x-csrf-token") or ""
        if not secrets.compare_digest(token.encode(), session.csrf.encode()):
            return _text(400, "missing or wrong CSRF token", [])
        if self.store is not None:
            self.store.delete(session.sid)
        cookies = self._clear(request)
        metadata: ProviderMetadata = yield NeedMetadata()
        if metadata.end_session_endpoint is None:
            return _redirect(self.web.post_logout_redirect, cookies)
        url = flows.end_session_url(
            metadata.end_session_endpoint,
            id_token_hint=session.id_token,
            post_logout_redirect_uri=self._absolute(request, self.web.post_logout_redirect),
            client_id=self.config.client_id,
        )
        return _redirect(url, cookies)

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
        except ValidationError as exc:
            log.info("bearer token refused: %s", exc)
            return self._challenge("invalid_token")
        identity = self._identity_from_claims(claims, access_token=token)
        return Proceed(identity)

    def _access_token_claims(self, token: str) -> Generator[Step, Any, Mapping[str, Any]]:
        audience = self.config.client_id if self.config.verify_token_audience else None
        rules = ClaimRules(self.config.issuer, audience=audience, leeway=self.config.clock_skew)
        cached = self.validated.get(token)
        if cached is not None:
            check_claims(cached, rules)
            return cached
        if token.count(".") == 2:
            claims = yield from self._verify(token, ASYMMETRIC_ALGORITHMS, access_token=True)
        elif self.web.bearer_introspection:
            metadata: ProviderMetadata = yield NeedMetadata()
            endpoint = metadata.endpoint("introspection_endpoint")
            claims = yield NeedFlow(flows.introspect(endpoint, token, "access_token"))
            if not claims.get("active"):
                raise ValidationError("the token is not active")
            claims = {"iss": self.config.issuer, **claims}
        else:
            raise ValidationError("not a JWT access token (introspection is off)")
        check_claims(claims, rules)
        if token.count(".") != 2:  # introspected: a revocation must show within a minute
            exp = claims.get("exp")
            short = time.time() + 60
            claims = {**claims, "exp": min(exp, short) if isinstance(exp, int | float) else short}
        self.validated.put(token, claims)
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
            stale = [n for n in chunk_names(self.web.session_cookie) if n in request.cookies]
            return None, [self._expire(request, n) for n in stale]
        if not refresh or not self._needs_refresh(session):
            return session, []
        if session.refresh_token is None:
            return None, self._clear(request)
        metadata: ProviderMetadata = yield NeedMetadata()
        try:
            grant = flows.refresh(metadata.token_endpoint, session.refresh_token)
            tokens: TokenSet = yield NeedRefresh(session.sid, session.refresh_token, grant)
        except TokenError as exc:
            log.info("session ended: the identity server refused the refresh (%s)", exc.error)
            return None, self._clear(request)
        except ProviderError as exc:  # the server is down: the session goes on as it is
            log.warning("token refresh failed, keeping the session for now: %s", exc)
            return session, []
        session.access_token = tokens.access_token
        session.refresh_token = tokens.refresh_token or session.refresh_token
        session.expires_at = tokens.expires_at
        # The ID token stays the one validated at login (a refreshed one is not checked here).
        return session, self._save(request, session)

    def _needs_refresh(self, session: Session) -> bool:
        if session.expires_at is None:
            return False
        margin = max(self.config.token_minimum_time_to_live, 5)
        return session.expires_at - time.time() <= margin

    def _load(self, request: WebRequest) -> Session | None:
        value = join_value(request.cookies, self.web.session_cookie)
        document = self.codec.open(value, "session") if value else None
        if document is None:
            return None
        if time.time() - float(document.get("t", 0)) > self.web.session_max_age:
            return None
        if self.store is not None:
            sid = document.get("sid")
            data = self.store.load(sid) if isinstance(sid, str) else None
            return Session.from_dict(data) if data is not None else None
        data = document.get("d")
        return Session.from_dict(data) if isinstance(data, dict) else None

    def _save(self, request: WebRequest, session: Session) -> list[str]:
        stamp = int(session.created_at)
        if self.store is not None:
            self.store.save(session.sid, session.to_dict())
            sealed = self.codec.seal({"sid": session.sid, "t": stamp}, "session")
        else:
            sealed = self.codec.seal({"d": session.to_dict(), "t": stamp}, "session")
        parts = split_value(self.web.session_cookie, sealed)
        used = {name for name, _ in parts}
        cookies = [self._cookie(request, n, v, self.web.session_max_age) for n, v in parts]
        cookies += [
            self._expire(request, n)
            for n in chunk_names(self.web.session_cookie)
            if n not in used and n in request.cookies
        ]
        return cookies

    def _clear(self, request: WebRequest) -> list[str]:
        names = [n for n in chunk_names(self.web.session_cookie) if n in request.cookies]
        return [self._expire(request, n) for n in names or [self.web.session_cookie]]

    # -- identity ---------------------------------------------------------------------------

    def _identity(self, session: Session) -> Identity:
        return self._identity_from_claims(
            session.claims,
            access_token=session.access_token,
            id_token=session.id_token,
            csrf_token=session.csrf,
        )

    def _identity_from_claims(
        self,
        claims: Mapping[str, Any],
        access_token: str | None = None,
        id_token: str | None = None,
        csrf_token: str | None = None,
    ) -> Identity:
        principal = self.config.principal_attribute
        name = claims.get(principal) or claims.get("preferred_username") or claims.get("sub")
        realm_access = claims.get("realm_access")
        roles = _strings(realm_access.get("roles") if isinstance(realm_access, dict) else None)
        resource_access = claims.get("resource_access")
        client = (
            resource_access.get(self.config.client_id)
            if isinstance(resource_access, dict)
            else None
        )
        client_roles = _strings(client.get("roles") if isinstance(client, dict) else None)
        scope = claims.get("scope")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Identity(
            claims=freeze(dict(claims)),  # shared by the requests of a session: read-only
            display_name=str(name or ""),
            roles=roles,
            client_roles=client_roles,
            scopes=scopes | {"authenticated"},
            access_token=access_token,
            id_token=id_token,
            csrf_token=csrf_token,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _verify(
        self, token: str, algorithms: tuple[str, ...], access_token: bool = False
    ) -> Generator[Step, Any, dict[str, Any]]:
        signed = parse_signed(token, algorithms)
        keys: list[PublicKey] = yield NeedKeys(signed.kid, signed.alg)
        claims = verified_claims(signed, keys)
        if access_token:
            check_access_token_type(signed, claims)
        return claims

    def _id_token_rules(self, nonce: str) -> ClaimRules:
        config = self.config
        return id_token_rules(config.issuer, config.client_id, config.clock_skew, nonce)

    def _is_public(self, path: str) -> bool:
        """Public paths: each entry matches itself and, unless it is "/", everything below it."""
        return any(
            path == prefix or (prefix != "/" and path.startswith(prefix.rstrip("/") + "/"))
            for prefix in self.web.public_paths
        )

    def _unauthenticated(self, request: WebRequest, cookies: list[str]) -> Outcome:
        if request.method == "OPTIONS":
            return Proceed(None, cookies)  # CORS preflights carry no credentials: the app answers
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

    def _secure(self, request: WebRequest) -> bool:
        """Secure cookies unless plain http on a loopback host, or ssl-required = "none"."""
        if self.config.ssl_required == "none":
            return False
        scheme, origin_host = self._origin(request)
        if scheme == "https":
            return True
        host = origin_host.rsplit(":", 1)[0].strip("[]")
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
    """What the shells answer when a step failed: 502/503 for the server, never a traceback."""
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
    """A urlencoded form body (the logout POST), or nothing when it is too large."""
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=20))


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
