"""The Flask example: a public page, a protected page, an admins' page (``@oidc.require``), a
downstream call, a logout button; the adapter installed as a Flask extension. A bank account
(``/account/<number>``, GET and DELETE) and an access-denied page serve the policy enforcer's
example configurations (examples/authorization).

Run: ``flask --app examples.flask_app.app:create_app run`` with ``OIDC_ADAPTER_CONFIG`` naming
the configuration (``make demo-flask`` does all of it).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from flask import Blueprint, Flask, jsonify, request

from adapter import AdapterConfig, OIDCClient
from adapter.integrations.flask import OIDC
from examples.showcase import downstream_page, profile_page, user_token

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str) -> str:
    return PAGE.format(title=html.escape(title), body=body)


def create_app(config: str | Path | AdapterConfig | None = None) -> Flask:
    """The example app with the adapter; ``config`` defaults to $OIDC_ADAPTER_CONFIG.

    With a tenants file (docs/tenants.md), the same pages are served once per tenant under its
    path prefix (``/acme/profile``, a blueprint each), each signing in at its own realm, and
    ``/`` lists them."""
    config = config or os.environ["OIDC_ADAPTER_CONFIG"]
    # The downstream API's address is configuration, never taken from a request's Host header,
    # and the service-account token is only ever sent there.
    api = os.environ.get("EXAMPLE_API_URL", "http://127.0.0.1:8000").rstrip("/")
    app = Flask(__name__)
    oidc = OIDC(app, config=config)  # the middleware on app.wsgi_app; a bad config stops here
    middleware = oidc.middleware(app)
    prefixes = [site.path_prefix for site in middleware.tenancy if site.path_prefix]
    for site in middleware.tenancy:
        if site.name is None or site.path_prefix:  # one realm, or a tenant under its prefix
            client = middleware.client_for(site.name)  # its own service account
            bp = pages(oidc, api + site.path_prefix, client, site.name or "pages", site.path_prefix)
            app.register_blueprint(bp, url_prefix=site.path_prefix or None)
    if prefixes:
        app.add_url_rule("/", "tenants", tenants_page(prefixes))
    return app


def tenants_page(prefixes: list[str]) -> Callable[[], str]:
    """The page outside every tenant (a shared public path): where each realm signs in."""
    links = "".join(f"<li><a href='{p}/profile'>{html.escape(p)}</a></li>" for p in prefixes)
    return lambda: page("Sign in at", f"<ul id='tenants'>{links}</ul>")


def pages(oidc: OIDC, api: str, client: OIDCClient, name: str, prefix: str) -> Blueprint:
    """The example's pages (a tenant's, under ``prefix``); ``api`` is where its downstream API
    is (its own ``/api/whoami``)."""
    bp = Blueprint(name, __name__)
    service_account = client.service_account_auth(allowed_origins=[api])

    @bp.get("/")
    def home() -> str:
        root = request.script_root + prefix  # mounted under a prefix: links keep it
        user = oidc.identity
        greeting = (
            f"<p id='greeting'>Signed in as {html.escape(user.display_name)}.</p>"
            if user
            else "<p id='greeting'>Not signed in.</p>"
        )
        return page("Public page", greeting + f"<p><a href='{root}/profile'>Your profile</a></p>")

    @bp.get("/profile")
    def profile() -> str:
        root = request.script_root + prefix  # mounted under a prefix: links keep it
        user = oidc.identity
        assert user is not None  # the middleware protects this path
        return page("Your profile", profile_page(user, root))

    @bp.get("/admin")
    @oidc.require(roles=["admin"])
    def admin() -> str:
        """Admins only: anyone else signed in gets 403 (a page to sign in as someone else)."""
        user = oidc.identity
        assert user is not None  # require() lets only identities through
        return page("Admin", f"<p id='admin-area'>{html.escape(user.display_name)}</p>")

    @bp.get("/api/whoami")
    def whoami() -> Any:
        user = oidc.identity
        assert user is not None
        return jsonify({"sub": user.identity, "client_id": user.claims.get("client_id")})

    @bp.get("/downstream")
    def downstream() -> str:
        root = request.script_root + prefix  # mounted under a prefix: links keep it
        user = oidc.identity
        assert user is not None  # the middleware protects this path
        with httpx.Client() as http:  # the user's token: only to the configured API address
            as_user = http.get(f"{api}/api/whoami", auth=user_token(user))
            as_service = http.get(f"{api}/api/whoami", auth=service_account)
        body = downstream_page(as_user.text, as_service.text, back=f"{root}/profile")
        return page("Downstream API", body)

    @bp.route("/account/<number>", methods=["GET", "DELETE"])
    def account(number: str) -> Any:
        """A bank account as JSON: read (GET) or closed (DELETE). Who may do which is for
        Keycloak's Authorization Services to say (examples/authorization: the policy enforcer)."""
        user = oidc.identity
        assert user is not None  # the middleware protects this path
        done = "deleted" if request.method == "DELETE" else "viewed"
        return jsonify({"account": number, done: True, "by": user.display_name})

    @bp.get("/access-denied")
    def access_denied() -> str:
        """Where the policy enforcer's ``on-deny-redirect-to`` sends a denied browser."""
        root = request.script_root + prefix  # mounted under a prefix: links keep it
        body = f"<p id='denied'>You may not do that.</p><p><a href='{root}/'>Home</a></p>"
        return page("Access denied", body)

    return bp


def create_app_behind_proxy(config: str | Path | AdapterConfig | None = None) -> Flask:
    """The example behind a reverse proxy that serves it under a prefix (``/myapp/``): werkzeug's
    ``ProxyFix`` takes scheme, host and prefix from the proxy's ``X-Forwarded-*`` headers (trust
    exactly one proxy: the counts are how many proxies set each header)."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = create_app(config)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
    return app
