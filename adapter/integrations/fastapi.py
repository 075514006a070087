"""FastAPI: ``Depends(require(roles=["admin"]))`` gives a route the signed-in identity, and the
OpenAPI document names the identity server, so Swagger UI's "Authorize" signs in there.

    oidc = OIDC(app, config="oidc.toml", swagger_client_id="my-app-docs")

    @app.get("/admin")
    def admin(user: Identity = Depends(require(roles=["admin"]))) -> dict[str, str]: ...

:class:`OIDC` puts :class:`~adapter.OIDCMiddleware` in front of the app (sign-in, sessions,
bearer tokens: as for any ASGI app) and fills the identity server's discovery URL into the
OpenAPI document, so routes can be declared (``require`` at import time, in routers) before
the configuration is read. ``require`` holds no decision: it asks ``adapter.web._access`` and
raises what the middleware would answer, as ``HTTPException`` (401 with a Bearer challenge,
403 with RFC 6750's ``insufficient_scope`` for a missing scope). ``require(permission=
"Bank Account#view")`` asks the policy enforcer (Keycloak Authorization Services): 403 when the
server denies it, 503 when it cannot be asked.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapter.config import AdapterConfig
from adapter.config.access_rules import Requirement
from adapter.errors import ConfigError, ProviderError
from adapter.protocol.flows import discovery_url
from adapter.reload import ReloadStatus
from adapter.web import _guard
from adapter.web._access import forbidden_response
from adapter.web._steps import Identity, Respond, WebRequest

_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[fastapi]'"
try:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.openapi.models import OpenIdConnect as OpenIdConnectModel
    from fastapi.routing import APIRoute
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError:
    raise ImportError(f"adapter.integrations.fastapi needs FastAPI; {_EXTRA_HINT}") from None

from adapter.asgi import OIDCMiddleware  # noqa: E402 - after FastAPI, which brings Starlette

SCHEME_NAME = "oidc"  # the OpenAPI security scheme every ``require`` shares
# In the OpenAPI document until OIDC fills in the issuer's discovery URL; it names the fix.
UNSET_URL = "set-by-adapter.integrations.fastapi.OIDC(app, config=...)-or-require(issuer=...)"
_FIX = "add it: adapter.integrations.fastapi.OIDC(app, config=...)"


class AccessRefused(HTTPException):
    """A route's 403 (or a step-up's answer, or the policy enforcer's 503). FastAPI's own
    handler sends ``detail`` as JSON; the handler :class:`OIDC` installs sends ``answer``: the
    middleware's page for a browser."""

    def __init__(self, answer: Respond, detail: Any) -> None:
        super().__init__(answer.status, detail=detail, headers=_plain_headers(answer))
        self.answer = answer  # 403; or a step-up's 401 or login redirect


class Require(SecurityBase):
    """A route's requirement as a FastAPI security dependency; it returns the Identity.

    Being a ``SecurityBase`` with an ``openIdConnect`` model, it puts the scheme in the
    OpenAPI document and on each route that uses it. Scopes asked with FastAPI's
    ``Security(require(...), scopes=[...])`` are required too (and listed on the route)."""

    def __init__(
        self,
        requirement: Requirement,
        issuer: str | None = None,
        *,
        scheme_name: str = SCHEME_NAME,
        description: str | None = None,
        permission: str | None = None,
    ) -> None:
        url = discovery_url(issuer) if issuer is not None else UNSET_URL
        self.model = OpenIdConnectModel(openIdConnectUrl=url, description=description)
        self.scheme_name = scheme_name
        self.requirement = requirement
        self.permission = _guard.permission_text(permission)  # malformed: stops the import

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> Identity:
        identity = _guard.identity_in(request.scope, _FIX)
        oidc = getattr(request.app.state, "oidc", None) if "app" in request.scope else None
        realm, logout_path = oidc.answers_as() if isinstance(oidc, OIDC) else (None, None)
        tenant = _guard.tenant_in(request.scope)  # several realms: the request's answers
        realm, logout_path = _guard.answering(
            tenant, realm, logout_path or _guard.DEFAULT_LOGOUT_PATH
        )
        if identity is None:
            answer = _guard.unauthorized(realm)
            raise HTTPException(
                401, detail="authentication required", headers=_plain_headers(answer)
            )
        requirement = self.requirement
        if security_scopes.scopes:
            requirement = replace(
                requirement, scopes=requirement.scopes | frozenset(security_scopes.scopes)
            )
        refused = _guard.refused_for(identity, requirement)
        web = _guard.asgi_web_request(request.method, request.headers.items(), request.scope)
        web = _guard.as_tenant_sees(web, tenant)
        if refused is None:
            identity = self._stepped_up(identity, requirement, web, oidc, tenant)
            return await self._permitted(identity, web, logout_path)
        answer = forbidden_response(web, identity, refused, logout_path)
        api = forbidden_response(_guard.as_api_request(web), identity, refused, logout_path)
        raise AccessRefused(answer, json.loads(api.body))

    async def _permitted(self, identity: Identity, web: WebRequest, logout_path: str) -> Identity:
        """The identity, when the policy enforcer grants the permission (or none is asked);
        else its 403 or 503 raised."""
        permission = self.permission
        if permission is None:
            return identity
        verdict = await _guard.asked_async(identity, permission)
        answer = _guard.permission_answer(verdict, identity, permission, web, logout_path)
        if answer is None:
            return identity
        api_web = _guard.as_api_request(web)
        api = _guard.permission_answer(verdict, identity, permission, api_web, logout_path)
        assert api is not None
        raise AccessRefused(answer, json.loads(api.body))

    @staticmethod
    def _stepped_up(
        identity: Identity,
        requirement: Requirement,
        web: WebRequest,
        oidc: Any,
        tenant: _guard.RequestTenant | None,
    ) -> Identity:
        """The identity, or the step-up's answer raised (a login redirect for a browser's
        session, RFC 9470's 401 for a bearer token)."""
        config = tenant.config if tenant is not None else None
        if config is None and isinstance(oidc, OIDC):
            config = oidc.config
        login_path, leeway = _guard.step_up_settings(config)
        answer = _guard.stepped_up(identity, requirement, web, login_path, leeway)
        if answer is None:
            return identity
        raise AccessRefused(answer, {"error": "insufficient_user_authentication"})


def require(
    roles: Iterable[str] = (),
    client_roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    any_role: Iterable[str] = (),
    *,
    acr: Iterable[str] = (),
    max_age: int | None = None,
    issuer: str | None = None,
    permission: str | None = None,
) -> Require:
    """A dependency for ``Depends(...)``: the identity holding every role (realm roles),
    client role (this client's roles) and scope listed, and one of ``any_role`` when given;
    signed in with one of the ``acr`` values and at most ``max_age`` seconds ago, when given
    (step-up: a browser's session is sent to sign in again, a bearer token gets RFC 9470's
    401 ``insufficient_user_authentication``).

    ``permission`` (``"Bank Account#view"``: a resource's name or id, ``#``, its scopes)
    asks the policy enforcer, as ``await identity.has_permission_async(...)`` does: denied,
    403 (as for a missing role); the identity server unreachable, 503. It needs a
    ``policy-enforcer`` block in the configuration (without one the request fails loudly);
    a malformed permission fails here, when the route is declared.

    ``issuer`` puts its discovery URL in the OpenAPI document; leave it out when
    :class:`OIDC` is installed (it fills in the configured issuer)."""
    requirement = Requirement.of(roles, client_roles, scopes, any_role, acr, max_age)
    return Require(requirement, issuer, permission=permission)


class OIDC:
    """The adapter for one FastAPI app: the middleware, the 403 page, Swagger UI's sign-in.

    ``swagger_client_id`` is the client Swagger UI signs in with: a public client (no
    secret: the browser holds no credentials) with PKCE, whose redirect URI is the app's
    ``/docs/oauth2-redirect``; its access tokens must be for this app (``token-audiences``).
    The OpenAPI document then offers the code flow alone, with the scopes the routes ask for.
    The other keywords go to :class:`~adapter.OIDCMiddleware` (``watch``, ``sighup`` ...).
    The configuration is read here, so a mistake in it stops the app at startup.

    ``status`` and ``reload()`` are the middleware's; ``middleware`` is the
    :class:`~adapter.OIDCMiddleware` itself (``adapter.metrics.enable(oidc.middleware)``, its
    ``client`` for service-account tokens).

    With a tenants file (docs/tenants.md) every route is served per tenant (``require``
    answers with the request's tenant); the OpenAPI document can name one issuer only:
    ``docs_tenant``'s (default: the first tenant), which Swagger UI signs in to.
    """

    def __init__(
        self,
        app: FastAPI | None = None,
        *,
        config: AdapterConfig | str | Path,
        swagger_client_id: str | None = None,
        swagger_scopes: Iterable[str] = ("openid",),
        docs_tenant: str | None = None,
        **middleware_options: Any,
    ) -> None:
        self.middleware = OIDCMiddleware(_not_installed, config, **middleware_options)
        # The tenant the OpenAPI document names (a plain app: its one configuration).
        self._docs = self.middleware.client_for(docs_tenant)
        self.swagger_client_id = swagger_client_id
        self.swagger_scopes = tuple(swagger_scopes)
        self._app: FastAPI | None = None
        if app is not None:
            self.init_app(app)

    @property
    def config(self) -> AdapterConfig:
        """The configuration in force (it follows reloads); with several tenants,
        ``docs_tenant``'s."""
        return self._docs.config

    @property
    def status(self) -> ReloadStatus | None:
        """Load times, the last reload error and the key states (``None`` when the
        configuration was given as an object: nothing to reload); see docs/metrics.md."""
        return self.middleware.status

    def reload(self) -> bool:
        """Reload the configuration now; ``False`` (the old state kept) when it is broken."""
        return self.middleware.reload()

    def answers_as(self) -> tuple[str, str]:
        """The realm of the 401 challenge and the logout path of the 403 page, as configured
        (with several realms, ``require`` answers with the request's tenant's)."""
        config = self.config
        return config.client_id, config.web.logout_path

    def init_app(self, app: FastAPI) -> None:
        """Install on ``app``: the middleware outermost of the app's own, the 403 handler, the
        issuer in the OpenAPI document and Swagger UI's OAuth settings."""
        if self._app is not None and self._app is not app:
            raise RuntimeError("OIDC: one instance per app; create another OIDC for this app")
        other = getattr(app.state, "oidc", None)
        if other is not None and other is not self:
            raise ConfigError(
                "OIDC: this FastAPI app has an OIDC already; a second middleware would make "
                "every sign-in loop: install one (in tests, give the app's own OIDC "
                "http=issuer.async_http(): docs/testing.md)"
            )
        self._app = app
        app.state.oidc = self
        app.add_middleware(self._wrap)
        app.add_exception_handler(AccessRefused, _send_answer)
        original = app.openapi

        def openapi() -> dict[str, Any]:
            schema = original()  # built once, then kept by FastAPI: filled in once
            schemes = schema.get("components", {}).get("securitySchemes", {})
            for scheme in schemes.values():
                if scheme.get("openIdConnectUrl") == UNSET_URL:
                    scheme["openIdConnectUrl"] = discovery_url(self.config.issuer)
            self._offer_code_flow(schemes, _api_scopes(app, schema) | set(self.swagger_scopes))
            return schema

        app.openapi = openapi  # type: ignore[method-assign]
        if self.swagger_client_id is not None:
            app.swagger_ui_init_oauth = {
                "clientId": self.swagger_client_id,
                "usePkceWithAuthorizationCodeGrant": True,
                "scopes": " ".join(self.swagger_scopes),
            }

    def _offer_code_flow(self, schemes: dict[str, Any], scopes: set[str]) -> None:
        """With ``swagger_client_id``, once discovery is known: the scheme becomes OAuth 2's
        authorization-code flow alone (Swagger UI adds PKCE) with the API's scopes. Left as
        openIdConnect, Swagger UI offers every grant the server supports (implicit too) and
        only the scopes it advertises."""
        metadata = self._docs.provider.cached_metadata()
        scheme = schemes.get(SCHEME_NAME, {})
        ours = scheme.get("openIdConnectUrl") == discovery_url(self.config.issuer)
        if self.swagger_client_id is None or not ours:
            return
        if metadata is None or metadata.authorization_endpoint is None:
            return
        code_flow = {
            "authorizationUrl": metadata.authorization_endpoint,
            "tokenUrl": metadata.token_endpoint,
            "scopes": {scope: "" for scope in sorted(scopes)},
        }
        described = {"description": scheme["description"]} if "description" in scheme else {}
        schemes[SCHEME_NAME] = {
            "type": "oauth2",
            **described,
            "flows": {"authorizationCode": code_flow},
        }

    def _wrap(self, app: ASGIApp) -> ASGIApp:
        """Starlette builds the middleware stack on first use; the middleware itself was made
        (and the configuration read) when this object was."""
        self.middleware.app = self._discovering(app)
        return self.middleware

    def _discovering(self, app: ASGIApp) -> ASGIApp:
        """Before the OpenAPI document is built: the server's endpoints, for Swagger UI's
        code flow (a server not answering leaves the openIdConnect scheme, tried again)."""
        if self.swagger_client_id is None or self._app is None or not self._app.openapi_url:
            return app
        openapi_url = self._app.openapi_url

        async def discovering(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"].endswith(openapi_url):
                with contextlib.suppress(ProviderError):
                    await self._docs.metadata()
            await app(scope, receive, send)

        return discovering


async def _not_installed(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("OIDC: the middleware runs before init_app(app) put it in front of an app")


async def _send_answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AccessRefused)
    answer = exc.answer
    response = Response(answer.body, answer.status)
    response.raw_headers = [*answer.raw_headers, *response.raw_headers]
    return response


def _api_scopes(app: FastAPI, schema: dict[str, Any]) -> set[str]:
    """The scopes the routes ask for: ``Security(..., scopes=[...])`` (in the document) and
    ``require(scopes=[...])`` (in the routes' dependencies)."""
    found: set[str] = set()
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for entry in operation.get("security", []) if isinstance(operation, dict) else ():
                found.update(entry.get(SCHEME_NAME, ()))
    pending = [route.dependant for route in app.routes if isinstance(route, APIRoute)]
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, Require):
            found |= dependant.call.requirement.scopes
        pending.extend(dependant.dependencies)
    return found


def _plain_headers(answer: Respond) -> dict[str, str]:
    """The answer's headers but its body's (FastAPI writes its own JSON body)."""
    skip = {"content-type", "content-length"}
    return {name: value for name, value in answer.headers if name.lower() not in skip}


__all__ = ["OIDC", "SCHEME_NAME", "AccessRefused", "Require", "require"]
