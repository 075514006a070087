"""The browser routes: login, callback and logout, and what a login grants.

Each route is a generator over the core's steps (:mod:`adapter.web._steps`), called by
:meth:`adapter.web.core.WebCore.handle` as ``return (yield from callback(self, request))``, the
core seen as a :class:`~adapter.web._context.RouteContext`; the session's cookie side lives in
:mod:`adapter.web._session_cookies`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Generator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from adapter import _observe
from adapter.errors import AdapterError, ProviderError, StoreError, TokenError, ValidationError
from adapter.jose import ASYMMETRIC_ALGORITHMS, MAX_ISSUED_TOKEN_LENGTH
from adapter.protocol import flows
from adapter.protocol.client_auth import expected_certificate
from adapter.protocol.dpop import DPoPKey
from adapter.protocol.jwe import expected_any, expected_id_tokens, signed_token
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.request_object import RequestSigner, request_signer
from adapter.protocol.tokens import (
    AlgorithmRefused,
    ClaimRules,
    TokenSet,
    check_claims,
    verify_jwt,
)
from adapter.web._context import RouteContext
from adapter.web._http import query_params, redirect, safe_return_path, same_text
from adapter.web._pages import error_page
from adapter.web._roles import ROLE_CLAIMS, note_roleless, with_roles
from adapter.web._session_cookies import SECURE_OVER_HTTP_FIX
from adapter.web._step_up import asked as asked_step_up
from adapter.web._step_up import from_pending, to_pending
from adapter.web._steps import Handling, NeedFlow, NeedMetadata, Respond, Step, WebRequest
from adapter.web._userinfo import with_userinfo
from adapter.web.session import Session

log = logging.getLogger(__name__)
LOGIN_MAX_AGE = 600  # seconds a login may take at the server
LOGOUT_MAX_AGE = 600  # seconds a logout may take at the server
_MAX_PENDING_LOGINS = 3  # logins started in other tabs that may still come back
REVOKE_TIMEOUT = 2.0  # seconds a logout waits for the server to revoke the refresh token
DPOP_SESSION_ALG = "ES256"  # a session's own DPoP key (ephemeral: made at sign-in)
SIGNED_RESPONSE_MODE = "query.jwt"  # JARM: the answer in one signed JWT, in the query
_RESPONSE_PARAMETERS = ("code", "state", "iss", "error", "error_description")


def login(core: RouteContext, request: WebRequest) -> Handling:
    """Send the browser to the server with fresh state, nonce and PKCE, kept in a cookie."""
    if request.method not in ("GET", "HEAD"):
        message = "sign in with a link to this address (a GET)"
        return _error(core, request, 405, "Method not allowed", message, [("Allow", "GET, HEAD")])
    query = query_params(request)
    target = safe_return_path(query.get("next", "/"))
    step = asked_step_up(query)  # a step-up's acr_values and max_age (_step_up), passed on
    metadata: ProviderMetadata = yield NeedMetadata()
    redirect_uri = core.redirect_uri(request)
    config, endpoint = core.config, metadata.endpoint("authorization_endpoint")
    sign = _request_signer(core, metadata)
    extra = step.login_query() if step is not None else {}
    if _signs_responses(core, metadata):
        extra["response_mode"] = SIGNED_RESPONSE_MODE
    if not _pushes(core, metadata):
        started = flows.authorization_request(
            endpoint, config.client_id, redirect_uri, core.web.scope, extra, sign
        )
    else:
        par_endpoint = metadata.endpoint("pushed_authorization_request_endpoint")
        try:
            started = yield NeedFlow(
                flows.pushed_authorization_request(
                    par_endpoint, endpoint, config.client_id, redirect_uri, core.web.scope,
                    extra, sign,
                )
            )  # fmt: skip
        except TokenError as exc:  # a configuration the server does not accept: say so
            log.warning("the identity server refused the pushed login request: %s", exc)
            message = "the identity server refused the sign-in request; try again later"
            return _error(core, request, 502, "Sign-in unavailable", message, [])
    now = time.time()
    pending = [p for p in _pending(core, request) if now - p.get("t", 0) < LOGIN_MAX_AGE]
    pending = pending[-(_MAX_PENDING_LOGINS - 1) :]
    pending.append(
        {
            "s": started.state,
            "n": started.nonce,
            "v": started.code_verifier,
            "r": redirect_uri,
            "to": target,
            "t": int(now),
            **to_pending(step),
        }
    )
    cookies = core.cookies
    sealed = cookies.codec.seal({"p": pending}, "login")
    cookie = cookies.cookie(request, cookies.names(request)[1], sealed, LOGIN_MAX_AGE)
    return redirect(started.url, [cookie])


def _signs_responses(core: RouteContext, metadata: ProviderMetadata) -> bool:
    """Whether the login asks for a signed answer (JARM): ``always``, or ``auto`` with a
    server that offers ``query.jwt``."""
    chosen = core.web.signed_responses
    offered = SIGNED_RESPONSE_MODE in metadata.response_modes_supported
    return chosen == "always" or (chosen == "auto" and offered)


def _signed_response(
    core: RouteContext, response: str | None
) -> Generator[Step, Any, dict[str, str] | None]:
    """The answer's parameters from its JWT (JARM §4.4): signed by the server's key with the
    ID tokens' algorithm (and, when the client registered an encryption of it, encrypted to
    one of its ``use = "enc"`` keys first: JARM §2.3), issued by the issuer for this client,
    not expired; ``None`` when it is missing or does not verify."""
    if response is None:
        log.warning("sign-in refused: the callback has no signed response (JARM was asked)")
        return None
    config = core.config
    rules = ClaimRules(config.issuer, audience=config.client_id, leeway=config.clock_skew)
    try:
        signed = signed_token(response, expected_any(core.ring))
        claims = yield from verify_jwt(
            signed, (config.id_token_signing_alg,), max_length=MAX_ISSUED_TOKEN_LENGTH
        )
        check_claims(claims, rules)
    except ValidationError as exc:
        log.warning("sign-in refused: the signed response does not verify (%s)", exc)
        return None
    return {k: v for k, v in claims.items() if k in _RESPONSE_PARAMETERS and isinstance(v, str)}


def _pushes(core: RouteContext, metadata: ProviderMetadata) -> bool:
    """Whether the login is pushed first (PAR): ``always``, or ``auto`` with a server that
    requires it (its discovery says so)."""
    chosen = core.web.pushed_authorization_requests
    return chosen == "always" or (
        chosen == "auto" and metadata.require_pushed_authorization_requests
    )


def _request_signer(core: RouteContext, metadata: ProviderMetadata) -> RequestSigner | None:
    """What signs the login's request object, with ``request-objects = "signed"``."""
    if core.web.request_objects != "signed":
        return None
    accepted = metadata.request_object_signing_alg_values_supported
    config = core.config
    backdate = config.credentials.assertion_backdate  # the server's clock, as for assertions
    return request_signer(core.ring, config.client_id, config.issuer, accepted, backdate=backdate)


def _pending(core: RouteContext, request: WebRequest) -> list[dict[str, Any]]:
    """The logins this browser started and has not finished (a few tabs at most)."""
    value = request.cookies.get(core.cookies.names(request)[1])
    document = core.cookies.codec.open(value, "login") if value else None
    pending = document.get("p") if document else None
    if not isinstance(pending, list):
        return []
    return [p for p in pending if isinstance(p, dict) and isinstance(p.get("s"), str)]


def callback(core: RouteContext, request: WebRequest) -> Handling:
    """Check the server's answer against the login it belongs to, then start a session."""
    query = query_params(request)
    if core.web.signed_responses != "off":
        metadata: ProviderMetadata = yield NeedMetadata()
        if _signs_responses(core, metadata):  # the answer is a JWT the server signed (JARM)
            unwrapped = yield from _signed_response(core, query.get("response"))
            if unwrapped is None:
                message = "the sign-in answer was not signed by the identity server; start again"
                return _error(core, request, 400, "Sign-in refused", message, [])
            query = unwrapped
    started, login_cookie = _take_pending(core, request, query.get("state"))
    refused = _refused_answer(core, request, query, started, login_cookie)
    if refused is not None:
        return refused
    assert started is not None  # an answer to no login here is refused above
    metadata = yield NeedMetadata()
    # A server that says it sends iss (RFC 9207 §2.4) must have sent it: no token request;
    # under a FAPI profile, every server must.
    required = metadata.authorization_response_iss_parameter_supported
    required = required or core.config.profile != "none"
    no_issuer = flows.response_issuer_problem(query.get("iss"), core.config.issuer, required)
    if no_issuer is not None:
        log.warning("login refused: %s (RFC 9207)", no_issuer)
        return _error(core, request, 400, "Sign-in refused", no_issuer, [login_cookie])
    try:
        tokens, claims, key = yield from _redeem(core, metadata, query["code"], started)
        id_claims = claims
        claims, scope = yield from grants(core, claims, tokens, key)
    except TokenError as exc:
        _observe.observer.login(core.config.tenant, False)
        log.info("login refused by the identity server: %s", exc.error)
        message = "the login code was refused; start again"
        return _error(core, request, 400, "Sign-in failed", message, [login_cookie])
    except ValidationError as exc:
        _observe.observer.login(core.config.tenant, False)
        _log_unverified(core, exc)
        message = "the login could not be verified"
        return _error(core, request, 401, "Sign-in failed", message, [login_cookie])
    too_weak = _step_up_refused(core, request, id_claims, started, login_cookie)
    if too_weak is not None:
        return too_weak
    if core.cookies.logouts.refuses(claims, time.time()):  # a session that would not last
        log.warning("login refused: the server session (sid) was logged out here before")
        message = "your session at the identity server was signed out; sign out there first"
        return _error(core, request, 401, "Signed out", message, [login_cookie])
    saved = yield from _start_session(core, request, tokens, claims, scope, key)
    _observe.observer.login(core.config.tenant, True)
    return redirect(
        request.root_path + safe_return_path(started.get("to", "/")), [login_cookie, *saved]
    )


def _step_up_refused(
    core: RouteContext,
    request: WebRequest,
    claims: dict[str, Any],
    started: dict[str, Any],
    login_cookie: str,
) -> Respond | None:
    """The 403 page when the login asked for a step-up (``acr_values``, ``max_age``) and the
    ID token does not show it (OpenID Connect Core §3.1.3.7): no session, no new redirect
    (which could loop), but a way to start again."""
    step = from_pending(started)
    if step is None:
        return None
    now = time.time()
    shortfall = step.shortfall(claims, now, core.config.clock_skew, since=started.get("t"))
    if shortfall is None:
        return None
    _observe.observer.login(core.config.tenant, False)
    log.warning("login refused: the step-up was not met (%s)", shortfall)
    message = "the identity server did not authenticate you strongly enough"
    return _error(core, request, 403, "Sign-in not strong enough", message, [login_cookie])


def _take_pending(
    core: RouteContext, request: WebRequest, state: str | None
) -> tuple[dict[str, Any] | None, str]:
    """The login this answer belongs to (by its state), and the login cookie without it: the
    state is used once, whatever happens next."""
    cookies = core.cookies
    pending = _pending(core, request)
    started = next((p for p in pending if state and same_text(state, p["s"])), None)
    rest = [p for p in pending if p is not started]
    login_name = cookies.names(request)[1]
    if not rest:
        return started, cookies.expire(request, login_name)
    sealed = cookies.codec.seal({"p": rest}, "login")
    return started, cookies.cookie(request, login_name, sealed, LOGIN_MAX_AGE)


def _refused_answer(
    core: RouteContext,
    request: WebRequest,
    query: dict[str, str],
    started: dict[str, Any] | None,
    login_cookie: str,
) -> Respond | None:
    """What is wrong with the answer before any call to the server: no such login (or too
    old), another issuer (RFC 9207: mix-up), the server's own error, no code."""
    if started is None or time.time() - started.get("t", 0) > LOGIN_MAX_AGE:
        message = _expired_message(core, request)
        return _error(core, request, 400, "This sign-in has expired", message, [login_cookie])
    wrong_issuer = flows.response_issuer_problem(query.get("iss"), core.config.issuer, False)
    if wrong_issuer is not None:
        return _error(core, request, 400, "Sign-in refused", wrong_issuer, [login_cookie])
    if "error" in query:
        reason = query.get("error", "")[:80]
        _observe.observer.login(core.config.tenant, False)
        title = "Sign-in cancelled" if reason == "access_denied" else "Sign-in refused"
        message = f"the identity server refused the login ({reason})"
        return _error(core, request, 401, title, message, [login_cookie])
    if not query.get("code"):
        message = "the callback has no code"
        return _error(core, request, 400, "Sign-in failed", message, [login_cookie])
    return None


_said_dropped = [False]  # the dropped login cookie is logged once per process


def _expired_message(core: RouteContext, request: WebRequest) -> str:
    """Why no login matches: expired or started elsewhere, or (no login cookie at all, on a
    plain-http origin whose cookies are Secure) the browser dropped the cookie: said on the
    answer and, once per process, in the log with the fix."""
    cookies = core.cookies
    if cookies.names(request)[1] in request.cookies or not cookies.dropped_over_http(request):
        return "login expired or not started here; start again"
    host = cookies.origin(request)[1][:100]
    cause = (
        f"the login cookie did not come back: this app is reached over plain http at {host} "
        "(not a loopback address), where its cookies are Secure and browsers drop them"
    )
    if not _said_dropped[0]:
        _said_dropped[0] = True
        log.warning("sign-in failed: %s; %s", cause, SECURE_OVER_HTTP_FIX)
    return f"{cause}; {SECURE_OVER_HTTP_FIX}"


def _redeem(
    core: RouteContext, metadata: ProviderMetadata, code: str, started: dict[str, Any]
) -> Generator[Step, Any, tuple[TokenSet, dict[str, Any], DPoPKey | None]]:
    """The code exchanged for tokens, and the ID token's claims checked against the login
    (its nonce) and with the roles the access token grants; with ``dpop-tokens``, the tokens
    bound to a new key, the session's own (RFC 9449)."""
    key = DPoPKey.generate(DPOP_SESSION_ALG) if core.web.dpop_tokens else None
    bound = expected_certificate(core.config, core.ring)  # mTLS under a FAPI profile
    tokens: TokenSet = yield NeedFlow(
        flows.exchange_code(metadata.token_endpoint, code, started["r"], started["v"], key, bound)
    )
    if tokens.id_token is None:
        raise ValidationError("the token response has no id_token")
    # An encrypted ID token is kept as the signed one inside (id_token_hint at logout).
    id_token = signed_token(tokens.id_token, expected_id_tokens(core.config, core.ring))
    claims = yield from verify_jwt(
        id_token,
        (core.config.id_token_signing_alg,),
        max_length=MAX_ISSUED_TOKEN_LENGTH,
    )
    check_claims(claims, core.id_token_rules(started["n"]))
    if id_token != tokens.id_token:
        tokens = replace(tokens, id_token=id_token)
    return tokens, claims, key


def _log_unverified(core: RouteContext, exc: ValidationError) -> None:
    if isinstance(exc, AlgorithmRefused):
        log.warning(
            "login refused: the ID token is signed with %s, id-token-signing-alg is %r; set "
            "it to the client's ID token signature algorithm at the server",
            exc.found,
            core.config.id_token_signing_alg,
        )
    else:
        log.warning("login refused: %s", exc)


def _start_session(
    core: RouteContext,
    request: WebRequest,
    tokens: TokenSet,
    claims: dict[str, Any],
    scope: str | None,
    key: DPoPKey | None = None,
) -> Generator[Step, Any, list[str]]:
    """A new session for the verified login (its claims and scope as :func:`grants` made
    them; ending this browser's previous one for good, copies too); the cookies that carry
    it."""
    cookies = core.cookies
    previous = yield from cookies.load(request)
    if previous is not None:
        yield from cookies.end(previous)
    session = Session.new(
        claims,
        id_token=tokens.id_token,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        scope=scope,
        dpop_key=key.to_dict() if key is not None else None,
    )
    saved = yield from cookies.save(request, session)
    assert saved is not None  # only a replace finds a session gone
    return saved


def _error(
    core: RouteContext,
    request: WebRequest,
    status: int,
    title: str,
    message: str,
    extra: list[str] | list[tuple[str, str]],
    retry: str | None = None,
) -> Respond:
    """A failed sign-in: a page with a way to try again for a browser, JSON for a client that
    asks for it, plain text otherwise."""
    return error_page(
        request, status, title, message, core.web.login_path, extra, core.error_template, retry
    )


def _untold(
    core: RouteContext, request: WebRequest, cookies: list[str], end_session: str | None
) -> Respond:
    """A logout that ended the session here (and in the browser: its cookies are cleared) but
    could not be recorded for the other processes (Redis refused the write). Said with 503,
    not a redirect as if everything went well: a copy of the cookie may still work elsewhere
    until the end is written, which the registry retries until Redis takes it. The refresh
    token was revoked. The page's "try again" is the identity server's end-session URL (with
    this logout's state, checked on return), so that trying again also ends the server's own
    session: a second POST here would find no session left to log out."""
    message = "you are signed out here, but the other servers could not be told yet; try again"
    if end_session is not None:
        message += " to sign out at the identity server too"
    return error_page(
        request, 503, "Signed out here only", message, core.web.login_path, cookies,
        core.error_template, retry=end_session,
    )  # fmt: skip


def grants(
    core: RouteContext, claims: dict[str, Any], tokens: TokenSet, dpop: DPoPKey | None = None
) -> Generator[Step, Any, tuple[dict[str, Any], str | None]]:
    """The session's claims with the roles of the access token, and the granted scope.

    The access token is what the server grants (Keycloak puts roles there only, with its
    "roles" scope): its role claims replace those of the ID token, at login and after every
    refresh, so a role removed at the server is gone at the next refresh. It is verified first.
    A JWT that cannot be verified grants no roles (fail closed); an opaque one leaves the ID
    token's (unless ``roles-from`` asks the server). With ``roles-from``
    (:mod:`adapter.web._roles`) the roles are the server's introspection's, asked once per
    access token (Keycloak's lightweight tokens). The calls to the server here (introspection,
    UserInfo) raise :class:`ProviderError` when it is out of reach: the callback answers its
    error page, a refresh keeps the session's claims (:func:`adapter.web._refresh.take_tokens`).
    With
    ``userinfo`` the UserInfo endpoint's claims go beneath (:mod:`adapter.web._userinfo`;
    ``dpop``: the key the tokens are bound to).
    """
    claims = yield from with_userinfo(core, claims, tokens, dpop)
    access: Mapping[str, Any] | None = None
    roles_from = core.web.roles_from
    readable = False  # a verified JWT, or an opaque token whose roles the server tells
    if tokens.access_token.count(".") == 2:
        try:
            access = yield from verify_jwt(
                tokens.access_token,
                ASYMMETRIC_ALGORITHMS,
                access_token=True,
                max_length=MAX_ISSUED_TOKEN_LENGTH,
            )
            readable = True
            note_roleless(roles_from, core.config.issuer, core.config.client_id, access)
        except (ValidationError, ProviderError) as exc:
            log.warning("roles not read from the access token, none granted: %s", exc)
            access = {}
    elif roles_from != "token":  # opaque: nothing to read but the server's introspection
        access, readable = {}, True
    if readable and access is not None:  # its roles (the server's, where roles-from says so)
        try:
            access = yield from with_roles(
                roles_from, core.introspected_roles, tokens.access_token, access,
                core.config.issuer, core.config.client_id,
            )  # fmt: skip
        except ValidationError as exc:
            log.warning("roles not read from introspection, none granted: %s", exc)
            access = {}
    if access is not None:
        claims = {k: v for k, v in claims.items() if k not in ROLE_CLAIMS}
        claims.update({k: access[k] for k in ROLE_CLAIMS if k in access})
    scope = tokens.scope
    if scope is None and access is not None and isinstance(access.get("scope"), str):
        scope = access["scope"]
    return claims, scope


def logout(core: RouteContext, request: WebRequest) -> Handling:
    """End the session here first, then revoke its refresh token and log out at the server.

    The server sends the browser back here (a GET with ``state``): see :func:`logout_return`.
    """
    if request.method in ("GET", "HEAD") and "state" in query_params(request):
        return logout_return(core, request)
    if request.method != "POST":
        message = "sign out with the app's sign-out button (a POST with the CSRF token)"
        return _error(
            core, request, 405, "Sign out with the button", message, [("Allow", "POST")],
            retry=f"{request.root_path}/",
        )  # fmt: skip
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return _error(core, request, 403, "Sign-out refused", "cross-site logout refused", [])
    cookies = core.cookies
    again = _sign_in_again(request)
    after = _after_logout(core, request, again)  # inside the app, like every path
    try:
        session = yield from cookies.load(request)
    except StoreError:  # Redis is down: a cookie session still ends here (a Redis one cannot)
        session = yield from cookies.load(request, shared=False)
    if session is None:
        # No session cookie came (perhaps a cross-site POST without it): change nothing.
        return redirect(after, [])
    token = request.form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not same_text(token, session.csrf):
        return _error(core, request, 400, "Sign-out refused", "missing or wrong CSRF token", [])
    # The session ends here first, whatever the identity server does (or fails to) next.
    told = yield from cookies.end(session)  # False: Redis refused, the others are told later
    cleared = cookies.clear(request)
    try:
        metadata: ProviderMetadata = yield NeedMetadata()
    except ProviderError as exc:
        log.warning("logout: the identity server cannot be reached (%s); signed out here", exc)
        return redirect(after, cleared) if told else _untold(core, request, cleared, None)
    yield from revoke(metadata, session.refresh_token)
    if metadata.end_session_endpoint is None:
        return redirect(after, cleared) if told else _untold(core, request, cleared, None)
    # A state bound to this browser (RP-Initiated Logout §2): its return is checked here.
    state = secrets.token_urlsafe(24)
    url = flows.end_session_url(
        metadata.end_session_endpoint,
        id_token_hint=session.id_token,
        post_logout_redirect_uri=core.absolute(request, request.root_path + core.web.logout_path),
        client_id=core.config.client_id,
        state=state,
    )
    document: dict[str, Any] = {"s": state, "t": int(time.time())}
    if again is not None:
        document["to"] = again  # the page to sign in again for, after the server's logout
    sealed = cookies.codec.seal(document, "logout")
    pending = cookies.cookie(request, cookies.logout_name(request), sealed, LOGOUT_MAX_AGE)
    if not told:
        return _untold(core, request, [*cleared, pending], url)
    return redirect(url, [*cleared, pending])


def logout_return(core: RouteContext, request: WebRequest) -> Respond:
    """The server's answer to this app's logout: with this browser's own ``state`` (sealed in
    its logout cookie, used once) it goes on to ``post-logout-redirect``; any other state (a
    forged link, another browser's logout, a late one) is refused with 400 and goes nowhere."""
    cookies = core.cookies
    name = cookies.logout_name(request)
    value = request.cookies.get(name)
    pending = cookies.codec.open(value, "logout") if value else None
    expected = pending.get("s") if pending is not None else None
    started = pending.get("t") if pending is not None else None
    state = query_params(request).get("state", "")
    if (
        not isinstance(expected, str)
        or not isinstance(started, int)
        or time.time() - started > LOGOUT_MAX_AGE
        or not same_text(state, expected)
    ):
        log.info("logout return refused: its state is not the one this browser's logout sent")
        return _error(
            core,
            request,
            400,
            "Sign-out not confirmed",
            "this sign-out was not started in this browser, or it has expired",
            [],
        )
    again = pending.get("to") if pending is not None else None
    after = _after_logout(core, request, again if isinstance(again, str) else None)
    return redirect(after, [cookies.expire(request, name)])


def _sign_in_again(request: WebRequest) -> str | None:
    """The page a logout form's ``next`` names (the 403 page's "sign in as someone else"):
    a path inside the app, or ``None`` for a plain logout."""
    target = request.form.get("next")
    return None if target is None else safe_return_path(target)


def _after_logout(core: RouteContext, request: WebRequest, again: str | None) -> str:
    """Where a logout ends: ``post-logout-redirect``, or a new login that returns to
    ``again`` (checked again: it may come from a cookie)."""
    if again is None:
        return request.root_path + core.web.post_logout_redirect
    query = urlencode({"next": safe_return_path(again)})
    return f"{request.root_path}{core.web.login_path}?{query}"


def revoke(metadata: ProviderMetadata, refresh_token: str | None) -> Generator[Step, Any, None]:
    """Revoke a refresh token (RFC 7009): best effort, in bounded time, so a copy of the cookie
    cannot refresh even where this process's record of the logout does not reach."""
    endpoint = metadata.revocation_endpoint
    if refresh_token is None or endpoint is None:
        return
    try:
        yield NeedFlow(
            flows.revoke(endpoint, refresh_token, "refresh_token"), timeout=REVOKE_TIMEOUT
        )
    except AdapterError as exc:
        log.info("the refresh token was not revoked (%s); the session ended here", exc)
