"""The example's views: Django's own ``request.user`` and ``@login_required``, and the
adapter's ``require`` for a role."""

from __future__ import annotations

import html
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse

from adapter.integrations.django import require

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str) -> HttpResponse:
    return HttpResponse(PAGE.format(title=html.escape(title), body=body))


def home(request: HttpRequest) -> HttpResponse:
    """Public: the adapter lets everyone in (public-paths), Django says who it is."""
    user = request.user
    greeting = (
        f"<p id='greeting'>Signed in as {html.escape(user.get_username())}.</p>"
        if user.is_authenticated
        else "<p id='greeting'>Not signed in.</p>"
    )
    return page("Public page", greeting + "<p><a href='/private'>Your page</a></p>")


@login_required
def private(request: HttpRequest) -> HttpResponse:
    """Django's own decorator: ``request.user`` is the identity's Django user."""
    user: Any = request.user
    identity = getattr(request, "oidc_identity", None)  # set by the OIDCMiddleware in settings
    csrf = html.escape(identity.csrf_token or "") if identity else ""
    rows = {
        "username": user.get_username(),
        "authenticated": str(user.is_authenticated),
        "staff": str(user.is_staff),
        "email": user.email,
        "roles": ", ".join(sorted(identity.roles)) if identity else "",
    }
    details = "".join(f"<dt>{k}</dt><dd id='{k}'>{html.escape(v)}</dd>" for k, v in rows.items())
    logout = (
        "<form method='post' action='/oidc/logout'>"
        f"<input type='hidden' name='csrf' value='{csrf}'>"
        "<button id='logout' type='submit'>Log out</button></form>"
    )
    return page("Your page", f"<dl>{details}</dl><p><a href='/staff'>Staff page</a></p>{logout}")


@require(roles=["admin"])
def staff(request: HttpRequest) -> HttpResponse:
    """Only for the realm role ``admin``: others get the adapter's 403 (page or RFC 6750)."""
    return page("Staff only", f"<p id='who'>{html.escape(request.user.get_username())}</p>")


def whoami(request: HttpRequest) -> JsonResponse:
    """An API: a browser session or a bearer token; answers what Django knows of the caller."""
    user: Any = request.user
    identity = getattr(request, "oidc_identity", None)
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "username": user.get_username() if user.is_authenticated else None,
            "staff": bool(getattr(user, "is_staff", False)),
            "superuser": bool(getattr(user, "is_superuser", False)),
            "groups": sorted(g.name for g in user.groups.all()) if user.is_authenticated else [],
            "roles": sorted(identity.roles) if identity else [],
            "session": request.session.session_key is not None,
        }
    )
