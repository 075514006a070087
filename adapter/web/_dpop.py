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
import re
import time
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

from adapter.errors import ValidationError
from adapter.protocol.dpop import DPoPProofError, bound_key, check_proof
from adapter.protocol.tokens import bound_certificate
from adapter.web._bearer import DPOP_ALGS, access_token_claims
from adapter.web._bearer import dpop_challenge as refused
from adapter.web._context import RouteContext
from adapter.web._http import RAW_PATH_SAFE, text
from adapter.web._mtls import presented_certificate
from adapter.web._steps import Handling, NeedShared, Proceed, Respond, Step, WebRequest

log = logging.getLogger(__name__)
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
PROOFS_FULL = text(503, "too many DPoP proofs at once; try again", [("Retry-After", "5")])


def dpop_request(core: RouteContext, request: WebRequest, token: str) -> Handling:
    """Let a DPoP request in with the token's identity, or answer 401 with a DPoP challenge."""
    proof = request.headers.get("dpop")
    if not proof:
        return refused(request, "invalid_dpop_proof", "no DPoP proof with a DPoP token")
    url = _public_url(core, request)
    if url is None:
        return refused(request, "invalid_dpop_proof", "the request's host is not a host name")
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
    certificate = bound_certificate(claims)  # bound to a certificate as well: shown too
    if certificate is not None and presented_certificate(request, core.web) != certificate:
        log.info("DPoP token refused: bound to a client certificate the request did not show")
        return refused(request, "invalid_token", "the token's certificate was not presented")
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
    enforced = yield from core.enforce(request, identity, bearer=True)
    if isinstance(enforced, Respond):
        return enforced
    return Proceed(enforced, private=core.web.private_responses)


def _public_url(core: RouteContext, request: WebRequest) -> str | None:
    """The URL the client called, as its proof names it (``htu``): this app's public origin
    (``redirect-uri``'s, else the request's scheme and Host) and the path as sent. A Host that
    is not a plain host name (``api.example/admin?``) would let a proof for one URL pass at
    another: ``None``."""
    scheme, host = core.cookies.origin(request)
    if not _HOST.fullmatch(host):
        return None
    path = request.raw_path or quote(request.path, safe=RAW_PATH_SAFE)
    return f"{scheme}://{host}{request.root_path}{path}"


def _first_use(core: RouteContext, key: str, until: float) -> Generator[Step, Any, bool | None]:
    """Whether the proof is used for the first time: in every process that shares Redis, or
    in this one."""
    cookies = core.cookies
    if cookies.sharing.enabled:
        fresh = yield NeedShared("proof", jti=key, jti_until=until, app=cookies.app)
        return bool(fresh)
    return core.proofs.first_use(key, until, time.time())
