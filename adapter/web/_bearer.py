"""Bearer tokens: a request that says who it is with ``Authorization: Bearer``.

A JWT is checked against the server's keys; an opaque token at the introspection endpoint when
``bearer-introspection`` is on. Either way it must be an access token (never an ID or refresh
token) for this app (its audience), and what was decided is remembered: a validated token until
it expires (an introspected one a minute at most), a refused opaque token for a few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Mapping
from typing import Any

from adapter.errors import ValidationError
from adapter.jose import MAX_TOKEN_LENGTH
from adapter.protocol import flows, tokens
from adapter.protocol.dpop import DEFAULT_ALGS, bound_key, www_authenticate
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import (
    AudienceMismatch,
    bound_certificate,
    check_claims,
    check_introspected,
)
from adapter.web._context import RouteContext
from adapter.web._http import digest, json_error, text, wants_json
from adapter.web._mtls import presented_certificate
from adapter.web._roles import note_roleless, with_roles
from adapter.web._steps import (
    Handling,
    NeedIntrospection,
    NeedMetadata,
    Proceed,
    Respond,
    Step,
    WebRequest,
)

log = logging.getLogger(__name__)
INTROSPECTED_REUSE = 60  # seconds: a revocation at the server shows within a minute
DPOP_ALGS = DEFAULT_ALGS  # what a DPoP proof may be signed with (asymmetric only)


def bearer(core: RouteContext, request: WebRequest, authorization: str | None) -> Handling:
    """Let the request in with the token's identity, or answer 401 with a challenge."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        if core.is_public(request.path, request.method):
            return Proceed(None)
        if core.web.dpop == "required":
            return dpop_challenge(request, None, None)
        return challenge(core.config.client_id, None, _json(request))
    if core.web.dpop == "required":  # no bearer token, however good, without its proof
        return dpop_challenge(request, "invalid_token", "a DPoP token and proof are required")
    token = token.strip()
    try:
        claims = yield from access_token_claims(core, token)
    except AudienceMismatch as exc:
        log.warning(
            "bearer token refused: its audience %s does not include %s; add an audience "
            "mapper for %r at the identity server, list the audience in token-audiences, or "
            "set verify-token-audience = false",
            list(exc.found) or "(none)",
            list(exc.expected),
            core.config.client_id,
        )
        return challenge(core.config.client_id, "invalid_token", _json(request))
    except ValidationError as exc:
        log.info("bearer token refused: %s", exc)
        return challenge(core.config.client_id, "invalid_token", _json(request))
    unbound = _binding_refused(core, request, claims)
    if unbound is not None:
        return unbound
    identity = core.identity_from_claims(claims, access_token=token)
    forbidden = core.forbidden(request, identity)
    if forbidden is not None:
        return forbidden
    enforced = yield from core.enforce(request, identity, bearer=True)
    if isinstance(enforced, Respond):
        return enforced
    outcome = Proceed(identity, private=core.web.private_responses)
    if "cnf" not in claims:  # a certificate-bound token is checked with every request's
        core.remember_bearer(token, claims, outcome)  # the shells reuse it (cached_bearer)
    return outcome if enforced is identity else Proceed(enforced, private=outcome.private)


def _binding_refused(
    core: RouteContext, request: WebRequest, claims: Mapping[str, Any]
) -> Respond | None:
    """The 401 for a bound token sent as a plain bearer token: DPoP-bound without its proof
    (RFC 9449 §7.2), certificate-bound without its certificate (RFC 8705 §3), or bound in a
    way this app cannot check; ``None`` for an unbound token or a certificate shown."""
    if bound_key(claims) is not None:
        log.info("bearer token refused: it is DPoP-bound, and came as Bearer without a proof")
        return challenge(core.config.client_id, "invalid_token", _json(request))
    certificate = bound_certificate(claims)
    if certificate is None and "cnf" in claims:
        log.info("bearer token refused: its cnf binds it to something this app cannot check")
        return challenge(core.config.client_id, "invalid_token", _json(request))
    if certificate is not None and presented_certificate(request, core.web) != certificate:
        log.info("bearer token refused: bound to a client certificate the request did not show")
        return challenge(core.config.client_id, "invalid_token", _json(request))
    return None


def access_token_claims(core: RouteContext, token: str) -> Generator[Step, Any, Mapping[str, Any]]:
    """The claims of a bearer token that is an access token for this app: a JWT checked as
    the clients check one (:func:`adapter.protocol.tokens.access_token_claims`), with its roles
    from the server's introspection where ``roles-from`` asks (:mod:`adapter.web._roles`), an
    opaque token introspected; either way remembered until it expires."""
    if token.count(".") == 2:
        claims = yield from tokens.access_token_claims(token, core.bearer_rules, core.validated)
        config, roles_from, kept = core.config, core.web.roles_from, core.introspected_roles
        note_roleless(roles_from, config.issuer, config.client_id, claims)
        return (
            yield from with_roles(roles_from, kept, token, claims, config.issuer, config.client_id)
        )
    cached = core.validated.checked(token, core.bearer_rules)
    if cached is not None:
        return cached
    if not core.web.bearer_introspection:
        raise ValidationError("not a JWT access token (introspection is off)")
    claims = yield from _introspected(core, token)
    core.validated.put(token, claims)
    return claims


def _introspected(core: RouteContext, token: str) -> Generator[Step, Any, dict[str, Any]]:
    """An opaque token's claims from the server (RFC 7662). A refusal is remembered for a few
    seconds and identical tokens in flight share one call, so junk tokens cannot drive one
    authenticated call to the server each."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValidationError(f"bearer token over the {MAX_TOKEN_LENGTH}-byte limit")
    key = digest(token)
    metadata: ProviderMetadata = yield NeedMetadata()
    endpoint = metadata.endpoint("introspection_endpoint")
    if key in core.refused:  # checked after the last wait: a refusal that just landed counts
        raise ValidationError("the token was refused moments ago")
    answer = yield NeedIntrospection(key, flows.introspect(endpoint, token, "access_token"))
    try:
        if not answer.get("active"):
            raise ValidationError("the token is not active")
        check_introspected(answer, core.audiences)
        claims = {"iss": core.config.issuer, **answer}
        check_claims(claims, core.bearer_rules)
    except ValidationError:
        core.refused.add(key)
        raise
    exp = claims.get("exp")
    soon = time.time() + INTROSPECTED_REUSE
    claims["exp"] = min(exp, soon) if isinstance(exp, int | float) else soon
    return claims


def challenge(realm: str, error: str | None, as_json: bool = False) -> Respond:
    """401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3): plain text, or JSON (``error``,
    ``error_description``) for a client that asks for JSON, as the 403 is."""
    value = f'Bearer realm="{realm}"'
    if error:
        value += f', error="{error}"'
    header = [("WWW-Authenticate", value)]
    if as_json:
        return json_error(401, "authentication required", header, error or "")
    return text(401, "authentication required", header)


def dpop_challenge(request: WebRequest, error: str | None, description: str | None) -> Respond:
    """401 with ``WWW-Authenticate: DPoP`` (RFC 9449 §7.1): the algorithms a proof may use,
    and the error; JSON for a client that asks for JSON."""
    header = [("WWW-Authenticate", www_authenticate(DPOP_ALGS, error, description))]
    if _json(request):
        return json_error(401, "authentication required", header, error or "")
    return text(401, "authentication required", header)


def _json(request: WebRequest) -> bool:
    return wants_json(request.headers.get("accept", ""))
