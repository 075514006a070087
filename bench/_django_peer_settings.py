"""The Django project of the peer rows (``bench/peers_wsgi.py``): its settings and its URLs.

Only the child process that ``bench.peers_wsgi`` starts for its Django rows configures Django
with these (``settings.configure(**django_settings(...))``): Django's settings are
process-wide and set once, and the process that runs the benchmarks may be a test worker that
has set Django up for the example project (``tests/django_site.py``), or will later. Nothing
here is read by any other process.

One project serves both sides; only the OIDC layer differs between the two WSGI handlers
the child builds (:func:`middleware`): Django's default middleware stack (``startproject``'s,
less messages), the database session backend (Django's default) and one SQLite database in
memory for sessions and users, for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.peers_wsgi import WEB_CLIENT, WEB_SECRET  # the client the user signed in to

SESSION_REFRESH = "mozilla_django_oidc.middleware.SessionRefresh"
ADAPTER_MIDDLEWARE = "adapter.integrations.django.OIDCMiddleware"
MOZILLA_BACKEND = "mozilla_django_oidc.auth.OIDCAuthenticationBackend"


def middleware(oidc: str) -> list[str]:
    """Django's default stack with ``oidc`` (SessionRefresh, or the adapter's middleware)
    right after ``AuthenticationMiddleware``, where each one's documentation puts it."""
    return [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        oidc,
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]


def django_settings(adapter_config: str, discovery: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of the project; ``adapter_config``: the adapter's configuration file;
    ``discovery``: the identity server's discovery document (mozilla-django-oidc is given its
    endpoints one by one, as its settings guide has it)."""
    return {
        "SECRET_KEY": "bench-django-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DEBUG": False,
        "ALLOWED_HOSTS": ["app.example.com"],
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "mozilla_django_oidc",  # its installation guide: after django.contrib.auth
            "rest_framework",
        ],
        "MIDDLEWARE": middleware(ADAPTER_MIDDLEWARE),  # each handler is built with its own
        "ROOT_URLCONF": __name__,
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        "SESSION_ENGINE": "django.contrib.sessions.backends.db",
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "LOGGING_CONFIG": None,
        "LOGIN_URL": "/oidc/login",
        # Each side's backend; ModelBackend for permissions, as both guides have it.
        "AUTHENTICATION_BACKENDS": [
            "adapter.integrations.django.OIDCBackend",
            MOZILLA_BACKEND,
            "django.contrib.auth.backends.ModelBackend",
        ],
        # The adapter (docs/django.md).
        "OIDC_ADAPTER": {"config": adapter_config},
        # mozilla-django-oidc (its settings guide): the same server and client, RS256 with
        # the server's JWKS.
        "OIDC_RP_CLIENT_ID": WEB_CLIENT,
        "OIDC_RP_CLIENT_SECRET": WEB_SECRET,
        "OIDC_RP_SIGN_ALGO": "RS256",
        "OIDC_OP_AUTHORIZATION_ENDPOINT": discovery["authorization_endpoint"],
        "OIDC_OP_TOKEN_ENDPOINT": discovery["token_endpoint"],
        "OIDC_OP_USER_ENDPOINT": discovery["userinfo_endpoint"],
        "OIDC_OP_JWKS_ENDPOINT": discovery["jwks_uri"],
        # Its DRF guide's way of naming the backend (else it instantiates every backend listed
        # above on each request to find its own).
        "OIDC_DRF_AUTH_BACKEND": MOZILLA_BACKEND,
        "REST_FRAMEWORK": {
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        },
    }


urlpatterns: list[Any] = []  # filled by install_urls() once Django is set up


def install_urls() -> None:
    """The project's views, the same for both sides: a ``@login_required`` page, and one DRF
    view served twice, each time with one side's authentication class."""
    from django.contrib.auth.decorators import login_required
    from django.http import HttpRequest, HttpResponse
    from django.urls import include, path
    from mozilla_django_oidc.contrib.drf import OIDCAuthentication
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from bench.peers_wsgi import adapter_drf_authentication

    @login_required  # type: ignore[untyped-decorator]  # Django is untyped
    def home(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"hello {request.user.get_username()}")

    class Me(APIView):  # type: ignore[misc]  # DRF is untyped
        def get(self, request: Request) -> Response:
            return Response({"user": request.user.get_username()})

    urlpatterns[:] = [
        path("", home),
        path("api/mozilla", Me.as_view(authentication_classes=[OIDCAuthentication])),
        # Second: the adapter's request pays the one failed pattern match more.
        path("api/adapter", Me.as_view(authentication_classes=[adapter_drf_authentication()])),
        path("oidc/", include("mozilla_django_oidc.urls")),  # SessionRefresh reverses these
    ]
