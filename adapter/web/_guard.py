"""What the framework idioms (``adapter.integrations.starlette``, ``.fastapi``, ``.flask``)
answer when a route's requirement is not met: the same 401 and 403 (and step-up) the
middleware gives for ``[[access]]``.

The idioms only translate: :mod:`adapter.web._access` decides and shapes the 403, this module adds
the 401 for a request with no identity (a route on a public path) and the check that the
middleware is there at all, so a decorator and a configured rule can never answer differently.

``require(permission="Bank Account#view")`` asks the policy enforcer (Keycloak Authorization
Services) through ``identity.has_permission``: denied, the 403 of a denied ``[[access]]`` rule
(kind ``permission``); the identity server unreachable, the enforcer's 503 (never a pass);
no policy enforcer configured, a loud error naming the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from adapter.config import AdapterConfig
from adapter.config.access_rules import Requirement
from adapter.errors import ProviderError, TokenError
from adapter.protocol.permissions import Permission
from adapter.web._access import Refusal, forbidden_response, refusal
from adapter.web._http import json_error, split_root, text, wants_json
from adapter.web._step_up import step_up_answer, step_up_needed
from adapter.web._steps import Identity, Respond, WebRequest
from adapter.web._tenants import mounted, under_prefix

log = logging.getLogger(__name__)
IDENTITY_KEY = "oidc.identity"  # where both shells put the identity (None: anonymous)
DEFAULT_LOGOUT_PATH = "/oidc/logout"  # the configuration's default logout-path
DEFAULT_LOGIN_PATH = "/oidc/login"  # the configuration's default login-path
DEFAULT_LEEWAY = 30  # seconds: the configuration's default clock-skew


def step_up_settings(config: AdapterConfig | None) -> tuple[str, float]:
    """Where a step-up signs in again and the leeway of its time checks: the configuration's
    (the request's tenant's, or the app's), else the defaults: one answer for every idiom."""
    if config is None:
        return DEFAULT_LOGIN_PATH, DEFAULT_LEEWAY
    return config.web.login_path, config.clock_skew


TENANT_KEY = "oidc.tenant"  # where both shells put the request's tenant, with several


class ConfiguredClient(Protocol):
    """A tenant's client: it holds the tenant's current state (reloads replace it)."""

    @property
    def config(self) -> AdapterConfig: ...


@dataclass(frozen=True, eq=False)
class RequestTenant:
    """The tenant that served a request, as the idioms need it: its configuration (as it is
    now) for the realm of a 401 and the logout path of a 403, and the path prefix that chose
    it, which the idioms' links and redirects keep (``""``: chosen by host, issuer or the
    app's resolver, the app's own root)."""

    name: str
    prefix: str
    client: ConfiguredClient

    @property
    def config(self) -> AdapterConfig:
        return self.client.config

    def __repr__(self) -> str:
        return f"RequestTenant({self.name!r}, prefix={self.prefix!r})"


def tenant_in(scope: Mapping[str, Any]) -> RequestTenant | None:
    """The tenant that served this request (an ASGI scope or a WSGI environ); ``None`` for a
    plain configuration, or a request no tenant claims (a shared public path)."""
    tenant = scope.get(TENANT_KEY)
    return tenant if isinstance(tenant, RequestTenant) else None


def as_tenant_sees(request: WebRequest, tenant: RequestTenant | None) -> WebRequest:
    """``request`` (as the framework sees it: the full path) as its tenant sees it: the
    tenant's prefix moved from the path to the root, as the shells do before the core."""
    if tenant is None or not tenant.prefix or request.root_path.endswith(tenant.prefix):
        return request  # no prefix, or the app mounted its pages there (Starlette's Mount)
    if not under_prefix(request.path, tenant.prefix):
        return request
    path, root_path = mounted(request.path, request.root_path, tenant.prefix)
    return replace(request, path=path, root_path=root_path)


def answering(
    tenant: RequestTenant | None, realm: str | None, logout_path: str
) -> tuple[str | None, str]:
    """The realm of a 401's challenge and the logout path of a 403's page: the request's
    tenant's (several realms), else as the idiom was given them."""
    if tenant is None:
        return realm, logout_path
    config = tenant.config
    return config.client_id, config.web.logout_path


class MiddlewareMissing(RuntimeError):
    """A protected route ran without the middleware in front: fail closed, and say the fix."""


def identity_in(scope: Mapping[str, Any], fix: str) -> Identity | None:
    """The identity the middleware put in ``scope`` (an ASGI scope or a WSGI environ).

    The middleware always sets the key, ``None`` for anonymous requests on public paths; a
    missing key means no middleware, and then nobody was ever authenticated: refuse loudly
    rather than answer 401 to every user forever."""
    if IDENTITY_KEY not in scope:
        raise MiddlewareMissing(
            f"no identity: the OIDC middleware is not in front of this app; {fix}"
        )
    identity = scope[IDENTITY_KEY]
    return identity if isinstance(identity, Identity) else None


def web_request(
    method: str,
    headers: Iterable[tuple[str, str]],
    root_path: str = "",
    path: str = "",
    query: str = "",
) -> WebRequest:
    """The parts of a framework's request that the 403 page looks at (header names lower
    case, as the core has them); ``path`` (relative to ``root_path``) and ``query`` name the
    page its "sign in as someone else" returns to (``""``: unknown, back to the start)."""
    lowered = {name.lower(): value for name, value in headers}
    return WebRequest(method.upper(), path, query, lowered, {}, root_path=root_path)


def asgi_web_request(
    method: str, headers: Iterable[tuple[str, str]], scope: Mapping[str, Any]
) -> WebRequest:
    """:func:`web_request` for an ASGI scope: its path relative to the app's root (whether the
    server put ``root_path`` in front of ``path`` or not, as the ASGI shell reads it) and its
    query."""
    path, root = split_root(str(scope.get("path") or "/"), str(scope.get("root_path") or ""))
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    return web_request(method, headers, root, path, query)


def unauthorized(realm: str | None, as_json: bool = False) -> Respond:
    """401 with RFC 6750's ``WWW-Authenticate: Bearer`` challenge (``realm``: the client id,
    as the middleware's own 401 has it); its body JSON for a client that asks for JSON."""
    challenge = "Bearer" if realm is None else f'Bearer realm="{realm}"'
    if as_json:
        return json_error(401, "authentication required", [("WWW-Authenticate", challenge)])
    return text(401, "authentication required", [("WWW-Authenticate", challenge)])


def answer(
    identity: Identity | None,
    requirement: Requirement,
    request: WebRequest,
    *,
    realm: str | None,
    logout_path: str,
    tenant: RequestTenant | None = None,
    login_path: str = DEFAULT_LOGIN_PATH,
    leeway: float = DEFAULT_LEEWAY,
) -> Respond | None:
    """``None`` when ``identity`` meets ``requirement``; else the 401 or 403 to send, or the
    step-up's answer (:func:`stepped_up`). With a ``tenant`` (several realms), its client id,
    login and logout paths and clock skew, under its prefix, are used."""
    realm, logout_path = answering(tenant, realm, logout_path)
    request = as_tenant_sees(request, tenant)
    if identity is None:
        return unauthorized(realm, wants_json(request.headers.get("accept", "")))
    refused = refused_for(identity, requirement)
    if refused is not None:
        return forbidden_response(request, identity, refused, logout_path)
    if tenant is not None:
        login_path, leeway = step_up_settings(tenant.config)
    return stepped_up(identity, requirement, request, login_path, leeway)


def stepped_up(
    identity: Identity,
    requirement: Requirement,
    request: WebRequest,
    login_path: str = DEFAULT_LOGIN_PATH,
    leeway: float = DEFAULT_LEEWAY,
) -> Respond | None:
    """``None`` when the identity signed in as strongly and recently as ``requirement`` asks
    (``acr``, ``max_age``); else the step-up's answer, as the middleware's for an
    ``[[access]]`` rule (:mod:`adapter.web._step_up`): back to the login for a browser's
    session, RFC 9470's 401 for a bearer token. ``request`` as its tenant sees it."""
    step = step_up_needed(requirement, identity.claims, leeway)
    if step is None:
        return None
    log.info("step-up asked: a route needs a stronger or more recent sign-in")
    return step_up_answer(request, step, login_path)


def refused_for(identity: Identity, requirement: Requirement) -> Refusal | None:
    """The access decision (:func:`adapter.web._access.refusal`), logged as the core logs it."""
    refused = refusal(identity, requirement)
    if refused is not None:
        log.info("access refused (%s missing: %s)", refused.kind, ", ".join(refused.missing))
    return refused


def as_api_request(request: WebRequest) -> WebRequest:
    """``request`` as an API client would send it: its 403 is the JSON body (FastAPI's
    ``HTTPException`` detail must be JSON, whatever the browser accepts)."""
    return replace(request, headers={**request.headers, "accept": "application/json"})


# -- require(permission=...): the policy enforcer asked in code ------------------------------

Verdict = Literal["granted", "denied", "unavailable"]


class EnforcerMissing(RuntimeError):
    """``require(permission=...)`` (or ``identity.has_permission``) where no policy enforcer
    is configured: fail closed, and say the fix."""


def parse_permission(text: str) -> Permission:
    """``"Bank Account#view, delete"`` as the policy enforcer asks it: a resource (name or
    id) and/or its scopes; a text naming neither is a :class:`ValueError` naming the form."""
    if not isinstance(text, str):
        raise TypeError(f'permission: a text such as "Bank Account#view", not {text!r}')
    permission = Permission.parse(text)
    if permission.resource is None and not permission.scopes:
        raise ValueError(
            f'permission {text!r}: name a resource, its scopes or both: "Bank Account#view" '
            "(the resource's name or id, '#', its scopes comma-separated), \"Bank Account\" "
            '(the whole resource) or "#view" (the scope on any resource)'
        )
    return permission


def permission_text(permission: str | None) -> str | None:
    """A ``require(permission=...)`` argument checked when the route is declared (a
    malformed one stops the app at import), as the 403 and the logs name it."""
    return None if permission is None else parse_permission(permission).parameter()


def enforcer_missing(permission: str) -> EnforcerMissing:
    return EnforcerMissing(
        f"permission {permission!r}: no policy enforcer to ask: configure policy-enforcer "
        '(keycloak.json\'s "policy-enforcer" block, or [policy-enforcer] in the TOML '
        "configuration, its enforcement-mode not DISABLED; docs/authorization.md)"
    )


def asked(identity: Identity, permission: str) -> Verdict:
    """What the policy enforcer says to ``permission`` for ``identity`` (WSGI idioms): the
    identity server unreachable (or refusing to answer) is ``"unavailable"``, never a yes."""
    _asking(identity, permission)
    try:
        return "granted" if identity.has_permission(permission) else "denied"
    except (ProviderError, TokenError) as exc:
        return _unanswered(exc)


async def asked_async(identity: Identity, permission: str) -> Verdict:
    """:func:`asked` for the ASGI idioms (``identity.has_permission_async``)."""
    _asking(identity, permission)
    try:
        return "granted" if await identity.has_permission_async(permission) else "denied"
    except (ProviderError, TokenError) as exc:
        return _unanswered(exc)


def permission_answer(
    verdict: Verdict,
    identity: Identity,
    permission: str,
    request: WebRequest,
    logout_path: str,
    tenant: RequestTenant | None = None,
) -> Respond | None:
    """``None`` when granted; else the 403 of a denied ``[[access]]`` rule (kind
    ``permission``) or the policy enforcer's 503. With a ``tenant`` (several realms), as
    :func:`answer`: its logout path, the request as it sees it."""
    if verdict == "granted":
        return None
    _, logout_path = answering(tenant, None, logout_path)
    request = as_tenant_sees(request, tenant)
    if verdict == "unavailable":  # only with a policy enforcer, whose module is loaded then
        from adapter.web._enforcer import unavailable

        return unavailable(request)
    log.info("access refused (permission missing: %s)", permission)
    refused = Refusal("permission", (permission,))
    return forbidden_response(request, identity, refused, logout_path)


def _asking(identity: Identity, permission: str) -> None:
    if identity.authorizer is None:
        raise enforcer_missing(permission)


def _unanswered(exc: Exception) -> Verdict:
    log.warning("policy-enforcer: the identity server could not decide: %s", exc)
    return "unavailable"
