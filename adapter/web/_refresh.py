"""A session as a request finds it, refreshed when its access token is about to expire.

The decision to refresh (the token's time to live against ``token-minimum-time-to-live``), the
refresh itself (one per session in flight: the shells' :class:`NeedRefresh` step), what a
refused or failed refresh means for the session, and taking the new tokens in (a new ID token
checked as at login, roles from the new access token).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from adapter import _observe
from adapter.errors import ProviderError, TokenError, ValidationError
from adapter.jose import MAX_ISSUED_TOKEN_LENGTH
from adapter.protocol import flows
from adapter.protocol.client_auth import expected_certificate
from adapter.protocol.jwe import expected_id_tokens, signed_token
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import TokenSet, check_claims, verify_jwt
from adapter.web._context import RouteContext
from adapter.web._http import digest
from adapter.web._login import grants, revoke
from adapter.web._steps import NeedMetadata, NeedRefresh, NeedShared, Step, WebRequest
from adapter.web.session import Session

log = logging.getLogger(__name__)
STALE_TOKEN_GRACE = 300  # seconds a session may run on an expired token while refreshes fail

SessionFound = Generator[Step, Any, tuple[Session | None, list[str]]]


def refresh_margin(context: RouteContext) -> float:
    """How long before its expiry an access token is refreshed (at least 5 s)."""
    return max(context.config.token_minimum_time_to_live, 5)


def needs_refresh(context: RouteContext, session: Session) -> bool:
    return session.expires_at is not None and (
        session.expires_at - time.time() <= refresh_margin(context)
    )


def current_session(
    context: RouteContext, request: WebRequest, refresh: bool = True
) -> SessionFound:
    """The request's session (refreshed if ``refresh`` and it is due) and the cookies to set;
    ``None`` when there is none or it just ended."""
    cookies = context.cookies
    session = yield from cookies.load(request)
    if session is None:
        return None, cookies.stale(request)
    if not refresh or not needs_refresh(context, session):
        return session, []
    if session.refresh_token is None:
        return None, cookies.clear(request)
    return (yield from _refreshing(context, request, session, session.refresh_token))


def _refreshing(
    context: RouteContext, request: WebRequest, session: Session, refresh_token: str
) -> SessionFound:
    cookies = context.cookies
    expires_at = session.expires_at or 0.0
    try:
        metadata: ProviderMetadata = yield NeedMetadata()
        bound = expected_certificate(context.config, context.ring)  # mTLS under a FAPI profile
        grant = flows.refresh(
            metadata.token_endpoint, refresh_token, dpop=session.bound_key, certificate=bound
        )
        key = f"{session.sid}:{digest(refresh_token)}"
        tokens: TokenSet | None = yield NeedRefresh(key, grant, wait=expires_at <= time.time())
    except TokenError as exc:
        _observe.observer.refresh(context.config.tenant, False)
        log.info("session ended: the identity server refused the refresh (%s)", exc.error)
        yield from cookies.end(session)
        return None, cookies.clear(request)
    except ProviderError as exc:
        _observe.observer.refresh(context.config.tenant, False)
        if time.time() > expires_at + STALE_TOKEN_GRACE:
            raise  # too long on an expired token: 502 until the server answers again
        log.warning("token refresh failed, keeping the session for now: %s", exc)
        return session, []
    if tokens is None:  # another request of this session is refreshing; this token works
        return session, []
    try:
        yield from take_tokens(context, session, tokens)
    except ValidationError as exc:
        log.warning("session ended: the refreshed ID token was not accepted (%s)", exc)
        yield from cookies.end(session)
        return None, cookies.clear(request)
    _observe.observer.refresh(context.config.tenant, True)
    context.decisions.forget_session(session.sid)  # its identity (roles) just changed
    saved = yield from cookies.save(request, session, replace=True)
    if saved is None:  # it ended while the refresh was on its way: no resurrection
        yield from revoke(metadata, tokens.refresh_token)
        return None, cookies.clear(request)
    if cookies.sharing.enabled:
        # The others forget the old identity.
        yield NeedShared("changed", sid=session.sid, app=cookies.app)
    return session, saved


def take_tokens(
    context: RouteContext, session: Session, tokens: TokenSet
) -> Generator[Step, Any, None]:
    """Take the refreshed tokens into ``session``: a new ID token is validated as at login
    (same subject, no nonce to match: OpenID Connect Core §12.2), and the roles and scope
    come from the new access token."""
    claims = dict(session.claims)
    if tokens.id_token is not None:
        # Encrypted: the signed token inside is checked and kept (id_token_hint at logout).
        id_token = signed_token(tokens.id_token, expected_id_tokens(context.config, context.ring))
        try:
            fresh = yield from verify_jwt(
                id_token,
                (context.config.id_token_signing_alg,),
                max_length=MAX_ISSUED_TOKEN_LENGTH,
            )
        except ProviderError as exc:  # the server's keys are out of reach, not a forgery
            log.warning("the refreshed ID token could not be checked now: %s", exc)
        else:
            check_claims(fresh, context.id_token_rules(None))
            if fresh.get("sub") != claims.get("sub"):
                raise ValidationError("the refreshed ID token names another subject")
            claims = fresh
            session.id_token = id_token
    try:
        session.claims, session.scope = yield from grants(
            context, claims, tokens, session.bound_key
        )
    except (ProviderError, TokenError) as exc:  # UserInfo or introspection out of reach
        log.warning("refreshed; the session keeps the claims and roles it had: %s", exc)
    session.access_token = tokens.access_token
    session.refresh_token = tokens.refresh_token or session.refresh_token
    session.expires_at = tokens.expires_at
