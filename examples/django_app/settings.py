"""Settings of the Django example: the usual ones, plus the adapter's four lines.

``OIDC_ADAPTER_CONFIG`` names the adapter's configuration (``make demo-django`` writes one) and
``DJANGO_DATABASE`` the SQLite file (run ``python -m examples.django_app.manage migrate`` once).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
ROOT = BASE_DIR.parent.parent

# A demo: a random key per process (Django's sessions end on a restart; the adapter's own
# session, sealed with its session-secret, signs the user in again at once).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "adapter.integrations.django.OIDCMiddleware",  # after AuthenticationMiddleware: request.user
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The identity's Django user (get-or-create by sub); ModelBackend keeps permissions working.
AUTHENTICATION_BACKENDS = [
    "adapter.integrations.django.OIDCBackend",
    "django.contrib.auth.backends.ModelBackend",
]

OIDC_ADAPTER = {
    "config": os.environ.get("OIDC_ADAPTER_CONFIG", str(ROOT / "demo" / "adapter.toml")),
    "staff_roles": ["admin"],  # Keycloak realm or client role -> is_staff
    "superuser_roles": ["admin"],
    "groups": {"user": "Users"},  # role -> Django group
}

# @login_required sends anonymous users to the adapter's login route (it takes ?next=).
LOGIN_URL = "/oidc/login"

ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DATABASE", str(ROOT / "demo" / "django.sqlite3")),
    }
}

USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
