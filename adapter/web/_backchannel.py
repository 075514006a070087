"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the server says who logged out.

When a user logs out at the identity server (or an admin ends her session there), the server POSTs
a signed ``logout_token`` to every client she used. The token is checked like an ID token plus the
logout-token rules (:func:`adapter.protocol.tokens.check_logout_token`), its ``jti`` must be new,
and then every session of that server session (``sid``) or user (``sub``) is refused from the next
request on: sessions are looked up where they are (the browser holds cookie sessions), so the
logout is recorded and checked whenever a session is seen, and what was remembered about the
sessions it names (and only those) is forgotten at once. With the Redis session store, the data of
the sessions it names (refresh tokens included) is deleted too, found through an index by the
server's session and user (:class:`adapter.stores.redis.RedisRegistry`). The answer is 200, or
400 with a JSON ``error``; never a redirect.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from typing import Any

from adapter.errors import StoreError, ValidationError
from adapter.jose import PublicKey
from adapter.protocol.tokens import (
    LOGOUT_TOKEN_MAX_AGE,
    check_logout_token,
    parse_signed,
    verified_claims,
)
from adapter.web._context import RouteContext
from adapter.web._decisions import server_names
from adapter.web._steps import (
    Handling,
    NeedKeys,
    NeedMetadata,
    NeedShared,
    Respond,
    Step,
    WebRequest,
)

log = logging.getLogger(__name__)
_HEADERS = (("Cache-Control", "no-store"), ("Content-Type", "application/json"))


def backchannel_logout(core: RouteContext, request: WebRequest) -> Handling:
    """Check the server's logout token and end the sessions it names."""
    if request.method != "POST":
        return _error(
            405, "invalid_request", "send the logout_token with POST", [("Allow", "POST")]
        )
    token = request.form.get("logout_token")
    if not token:
        return _error(400, "invalid_request", "no logout_token in the form")
    yield NeedMetadata()  # discovery first: the server's keys come from its jwks_uri
    config = core.config
    try:
        # As for ID tokens (Back-Channel Logout 1.0 §2.6): the client's algorithm, not any
        # the server can sign with.
        signed = parse_signed(token, (config.id_token_signing_alg,))
        keys: list[PublicKey] = yield NeedKeys(signed.kid, signed.alg)
        claims = verified_claims(signed, keys)
        logout = check_logout_token(
            signed, claims, config.issuer, config.client_id, config.clock_skew
        )
    except ValidationError as exc:
        log.info("back-channel logout refused: %s", exc)
        return _error(400, "invalid_request", "the logout token is not valid")
    # A server session (sid) ends that session only; a logout of the user without one (sub
    # alone) ends all her sessions. Keycloak sends both: the sid decides.
    sid, sub = logout.sid, (None if logout.sid else logout.sub)
    recorded, untold = yield from end_server_sessions(core, sid, sub, logout.jti)
    if not recorded:
        log.info("back-channel logout refused: its jti was seen before (a replay)")
        return _error(400, "invalid_request", "the logout token was used before")
    if untold:  # 503: the server's log shows the logout did not reach every process
        return _error(503, "temporarily_unavailable", "ended here; other processes not told")
    log.info("back-channel logout: sessions of %s ended", "server session" if sid else "user")
    return Respond(200, _HEADERS)


def end_server_sessions(
    core: RouteContext, sid: str | None, sub: str | None, jti: str, front: bool = False
) -> Generator[Step, Any, tuple[bool, bool]]:
    """End the sessions of a server session (``sid``) or user (``sub``) the identity server
    logged out (back-channel, or front-channel: :mod:`adapter.web._frontchannel`): recorded
    here and, with Redis, for every process; what was remembered about them forgotten.
    (recorded, untold) as :func:`_record` says them."""
    watermark = core.cookies.logouts.watermark
    recorded, untold = yield from _record(core, sid, sub, jti, front)
    if not recorded:
        return False, untold
    if core.cookies.logouts.watermark > watermark:  # a full record refuses older sessions
        core.decisions.clear()
    else:
        core.decisions.forget_named(server_names(sid, sub))  # none it names answered from memory
    return True, untold


def _record(
    core: RouteContext, sid: str | None, sub: str | None, jti: str, front: bool
) -> Generator[Step, Any, tuple[bool, bool]]:
    """Record the logout (its ``jti`` checked once, for every process when they share Redis):
    (recorded, untold). ``recorded`` is False for a replayed ``jti``; ``untold`` when Redis
    refused, so that only this process knows (and the server hears 503)."""
    config, cookies = core.config, core.cookies
    now = time.time()
    until = now + core.web.session_max_age
    jti_until = now + LOGOUT_TOKEN_MAX_AGE + 2 * config.clock_skew
    if not cookies.sharing.enabled:
        return cookies.logouts.record(sid, sub, jti, until, jti_until, front), False
    try:
        recorded = yield NeedShared(
            "logout", at=now, until=until, idp_sid=sid, sub=sub, jti=jti, jti_until=jti_until,
            app=cookies.app, front=front,
        )  # fmt: skip
    except StoreError as exc:  # Redis refused: end them here at least, and say so
        log.error("back-channel logout: other processes could not be told (%s)", exc)
        return cookies.logouts.record(sid, sub, jti, until, jti_until, front), True
    if recorded:
        cookies.logouts.apply(sid, sub, now, until, front=front)
    return bool(recorded), False


def _error(
    status: int, error: str, description: str, extra: list[tuple[str, str]] | None = None
) -> Respond:
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Respond(status, (*_HEADERS, *(extra or ())), body)
