"""The FastAPI example: a public page, /profile (signed in), /admin (role admin), an API guarded
by scopes and a role, and Swagger UI at /docs whose "Authorize" signs in at the identity server.

Run: ``uvicorn --factory examples.fastapi_app.app:create_app`` with ``OIDC_ADAPTER_CONFIG``
naming the configuration and ``EXAMPLE_SWAGGER_CLIENT_ID`` the public client Swagger UI signs
in with (``make demo-fastapi`` does all of it). The configuration's ``public-paths`` must hold
``/docs`` and ``/openapi.json``: Swagger UI loads them before anyone is signed in.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from adapter import AdapterConfig, Identity, current_identity
from adapter.integrations.fastapi import OIDC, require
from examples.showcase import profile_page

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>"""
SWAGGER_SCOPES = ("openid", "api:read")  # what Swagger UI asks for: the reports need api:read

# Route requirements, declared once (they need no configuration: OIDC fills in the issuer).
SignedIn = Annotated[Identity, Depends(require())]
Admin = Annotated[Identity, Depends(require(roles=["admin"]))]
Reader = Annotated[Identity, Depends(require(scopes=["api:read"]))]
AdminWriter = Annotated[Identity, Security(require(roles=["admin"]), scopes=["api:write"])]


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body))


def swagger_ui_files() -> Path | None:
    """Swagger UI's own files, served from here rather than a CDN (machines without internet,
    strict CSPs): ``SWAGGER_UI_DIR``, else the copy the ``fastapi-offline`` package ships."""
    configured = os.environ.get("SWAGGER_UI_DIR")
    if configured:
        return Path(configured)
    try:
        import fastapi_offline
    except ImportError:
        return None
    return Path(fastapi_offline.__file__).parent / "static"


def create_app(
    config: str | Path | AdapterConfig | None = None, swagger_client_id: str | None = None
) -> FastAPI:
    """The example app with the adapter; ``config`` defaults to $OIDC_ADAPTER_CONFIG."""
    config = config or os.environ["OIDC_ADAPTER_CONFIG"]
    swagger_client_id = swagger_client_id or os.environ.get("EXAMPLE_SWAGGER_CLIENT_ID", "docs")
    app = FastAPI(title="oidc-adapter FastAPI example", docs_url=None)
    OIDC(app, config=config, swagger_client_id=swagger_client_id, swagger_scopes=SWAGGER_SCOPES)
    add_swagger_ui(app)

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # mounted under a prefix: links keep it
        user = current_identity(request)  # None: this page is public
        greeting = (
            f"<p id='greeting'>Signed in as {html.escape(user.display_name)}.</p>"
            if user
            else "<p id='greeting'>Not signed in.</p>"
        )
        links = (
            f"<p><a href='{root}/profile'>Your profile</a> · <a href='{root}/admin'>Admin</a>"
            f" · <a href='{root}/docs'>API docs</a></p>"
        )
        return page("Public page", greeting + links)

    @app.get("/profile", response_class=HTMLResponse)
    def profile(request: Request, user: SignedIn) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return page("Your profile", profile_page(user, root, downstream=False))

    @app.get("/admin", response_class=HTMLResponse)
    def admin(user: Admin) -> HTMLResponse:
        """Admins only: anyone else signed in gets 403 (a page to sign in as someone else)."""
        return page("Admin", f"<p id='admin-area'>{html.escape(user.display_name)}</p>")

    @app.get("/api/reports")
    def reports(user: Reader) -> dict[str, object]:
        """Needs the scope api:read: a token from Swagger UI's "Authorize" has it."""
        return {"reports": [{"id": 7, "title": "Quarterly numbers"}], "for": user.display_name}

    @app.delete("/api/reports/{report_id}")
    def delete_report(report_id: int, user: AdminWriter) -> dict[str, object]:
        """Needs the role admin and the scope api:write (FastAPI's ``Security`` scopes)."""
        return {"deleted": report_id, "by": user.display_name}

    return app


def add_swagger_ui(app: FastAPI) -> None:
    """FastAPI's /docs, with Swagger UI's files from this app when they are installed."""
    files = swagger_ui_files()
    assets: dict[str, str] = {}
    if files is not None and (files / "swagger-ui-bundle.js").is_file():
        app.mount("/docs/assets", StaticFiles(directory=files), name="swagger-ui")
        assets = {
            "swagger_js_url": "/docs/assets/swagger-ui-bundle.js",
            "swagger_css_url": "/docs/assets/swagger-ui.css",
            "swagger_favicon_url": "/docs/assets/favicon.png",
        }

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            init_oauth=app.swagger_ui_init_oauth,
            **{name: root + url for name, url in assets.items()},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
