"""DPoP-bound requests at the resource server (RFC 9449 §7): ``Authorization: DPoP <token>``
with a ``DPoP`` proof header.

The proof shows the caller holds the key the token is bound to: it is checked
(:func:`adapter.protocol.dpop.check_proof`: type, algorithm, public key, signature, this
request's method and public URL, its age, the token's hash), then the token as any access
token, then the binding (the token's ``cnf.jkt`` is the proof key's thumbprint), then the
proof's ``jti`` is used up: once in this process, or once in every process when they share
Redis. A stolen token without its key, or a proof replayed, gets 401 with a ``DPoP``
challenge. A decision is never remembered by token here (the proof differs every time), and a
DPoP-bound token sent as ``Bearer`` is refused by :mod:`adapter.web._bearer`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from adapter.errors import ValidationError
from adapter.protocol.dpop import DPoPProofError, bound_key, check_proof
from adapter.web._bearer import DPOP_ALGS, access_token_claims
from adapter.web._bearer import dpop_challenge as refused
from adapter.web._context import RouteContext
from adapter.web._http import text
from adapter.web._steps import Handling, NeedShared, Proceed, Step, WebRequest

log = logging.getLogger(__name__)
PROOFS_FULL = text(503, "too many DPoP proofs at once; try again", [("Retry-After", "5")])


def dpop_request(core: RouteContext, request: WebRequest, token: str) -> Handling:
    """Let a DPoP request in with the token's identity, or answer 401 with a DPoP challenge."""
    proof = request.headers.get("dpop")
    if not proof:
        return refused(request, "invalid_dpop_proof", "no DPoP proof with a DPoP token")
    url = core.absolute(request, request.root_path + request.path)  # as the client sent it
    try:
        checked = check_proof(
            proof,
            method=request.method,
            url=url,
            access_token=token,
            algorithms=DPOP_ALGS,
            leeway=core.config.clock_skew,
        )
    except DPoPProofError as exc:
        log.info("DPoP proof refused: %s", exc.description)
        return refused(request, exc.error, exc.description)
    try:
        claims = yield from access_token_claims(core, token)
    except ValidationError as exc:
        log.info("DPoP token refused: %s", exc)
        return refused(request, "invalid_token", None)
    if bound_key(claims) != checked.jkt:
        log.info("DPoP token refused: it is not bound to the proof's key")
        return refused(request, "invalid_token", "the token is not bound to the proof's key")
    fresh = yield from _first_use(core, f"{checked.jkt}:{checked.jti}", checked.replay_until)
    if fresh is None:
        return PROOFS_FULL
    if not fresh:
        log.info("DPoP proof refused: its jti was used before (a replay)")
        return refused(request, "invalid_dpop_proof", "the proof was used before")
    identity = core.identity_from_claims(claims, access_token=token)
    forbidden = core.forbidden(request, identity, proven=True)
    if forbidden is not None:
        return forbidden
    return Proceed(identity, private=core.web.private_responses)


def _first_use(core: RouteContext, key: str, until: float) -> Generator[Step, Any, bool | None]:
    """Whether the proof is used for the first time: in every process that shares Redis, or
    in this one."""
    cookies = core.cookies
    if cookies.sharing.enabled:
        fresh = yield NeedShared("proof", jti=key, jti_until=until, app=cookies.app)
        return bool(fresh)
    return core.proofs.first_use(key, until, time.time())
