"""The WSGI application: Django behind the adapter (login, sessions, bearer checks, /k_jwks)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from adapter.integrations.django import wrap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = wrap(get_wsgi_application())
