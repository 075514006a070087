"""The Starlette example: a public page, a protected page, an admins' page (``@require``), a
downstream call, a logout button. A bank account (``/account/{id}``, GET and DELETE) and an
access-denied page serve the policy enforcer's example configurations (examples/authorization).

Run: ``uvicorn --factory examples.starlette_app.app:create_app`` with ``OIDC_ADAPTER_CONFIG``
naming the configuration (``make demo`` does all of it).
"""

from __future__ import annotations

import html
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Host, Mount, Route, Router

from adapter import AdapterConfig, AsyncOIDCClient, OIDCMiddleware
from adapter.integrations.starlette import require
from examples.showcase import downstream_page, profile_page, user_token

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body))


def create_app(config: str | Path | AdapterConfig | None = None) -> OIDCMiddleware:
    """The example app behind the middleware; ``config`` defaults to $OIDC_ADAPTER_CONFIG.

    With a tenants file (docs/tenants.md), the same pages are served once per tenant under its
    path prefix (``/acme/profile``; ``/`` lists them) or on its host, each signing in at its
    own realm."""
    config = config or os.environ["OIDC_ADAPTER_CONFIG"]
    # The downstream API's address is configuration, never taken from a request's Host header,
    # and the service-account token is only ever sent there.
    api = os.environ.get("EXAMPLE_API_URL", "http://127.0.0.1:8000").rstrip("/")
    app = Starlette()
    middleware = OIDCMiddleware(app, config)
    for site in middleware.tenancy:  # several realms: each tenant's pages, its own client's
        client = middleware.client_for(site.name)
        if site.path_prefix:  # under its prefix
            routes = pages(api + site.path_prefix, client)
            app.router.routes.append(Mount(site.path_prefix, routes=routes))
        elif site.host:  # on its host (its API too: a bearer token goes to its own host)
            port = urlsplit(api).port
            own_api = urlsplit(api)._replace(netloc=site.host + (f":{port}" if port else ""))
            app.router.routes.append(Host(site.host, Router(pages(own_api.geturl(), client))))
        else:  # one realm
            app.router.routes.extend(pages(api, client))
    prefixes = [site.path_prefix for site in middleware.tenancy if site.path_prefix]
    if prefixes:
        app.router.routes.append(Route("/", tenants_page(prefixes)))
    return middleware


def tenants_page(prefixes: list[str]) -> Callable[[Request], Awaitable[Response]]:
    """The page outside every tenant (a shared public path): where each realm signs in."""
    links = "".join(f"<li><a href='{p}/profile'>{html.escape(p)}</a></li>" for p in prefixes)

    async def tenants(request: Request) -> Response:
        return page("Sign in at", f"<ul id='tenants'>{links}</ul>")

    return tenants


def pages(api: str, client: AsyncOIDCClient) -> list[Route]:
    """The example's pages; ``api`` is where its downstream API is (its own ``/api/whoami``)."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(api))
    service_account = client.service_account_auth(allowed_origins=[origin])

    async def home(request: Request) -> Response:
        root = request.scope.get("root_path", "")  # mounted under a prefix: links keep it
        user = request.user
        greeting = (
            f"<p id='greeting'>Signed in as {html.escape(user.display_name)}.</p>"
            if user.is_authenticated
            else "<p id='greeting'>Not signed in.</p>"
        )
        return page("Public page", greeting + f"<p><a href='{root}/profile'>Your profile</a></p>")

    async def profile(request: Request) -> Response:
        root = request.scope.get("root_path", "")  # mounted under a prefix: links keep it
        user = request.user
        return page("Your profile", profile_page(user, root))

    @require(roles=["admin"])
    async def admin(request: Request) -> Response:
        """Admins only: anyone else signed in gets 403 (a page to sign in as someone else)."""
        return page("Admin", f"<p id='admin-area'>{html.escape(request.user.display_name)}</p>")

    async def whoami(request: Request) -> Response:
        """A downstream API: called with a bearer token (the user's or the service account's)."""
        user = request.user
        return JSONResponse({"sub": user.identity, "client_id": user.claims.get("client_id")})

    async def downstream(request: Request) -> Response:
        root = request.scope.get("root_path", "")  # mounted under a prefix: links keep it
        async with httpx.AsyncClient() as http:  # the user's token: only to the API's address
            as_user = await http.get(f"{api}/api/whoami", auth=user_token(request.user))
            as_service = await http.get(f"{api}/api/whoami", auth=service_account)
        body = downstream_page(as_user.text, as_service.text, back=f"{root}/profile")
        return page("Downstream API", body)

    async def account(request: Request) -> Response:
        """A bank account as JSON: read (GET) or closed (DELETE). Who may do which is for
        Keycloak's Authorization Services to say (examples/authorization: the policy enforcer)."""
        number = request.path_params["id"]
        done = "deleted" if request.method == "DELETE" else "viewed"
        return JSONResponse({"account": number, done: True, "by": request.user.display_name})

    async def access_denied(request: Request) -> Response:
        """Where the policy enforcer's ``on-deny-redirect-to`` sends a denied browser."""
        root = request.scope.get("root_path", "")  # mounted under a prefix: links keep it
        body = f"<p id='denied'>You may not do that.</p><p><a href='{root}/'>Home</a></p>"
        return page("Access denied", body)

    return [
        Route("/", home),
        Route("/profile", profile),
        Route("/admin", admin),
        Route("/api/whoami", whoami),
        Route("/downstream", downstream),
        Route("/account/{id}", account, methods=["GET", "DELETE"]),
        Route("/access-denied", access_denied),
    ]
