"""The Django example project (examples/django_app) set up in the test process, once.

Django's settings are process-wide: every test module that needs Django shares one setup, with
the adapter's configuration at ``<dir>/adapter.toml`` (each module writes its own there before
it wraps the application) and a SQLite database at ``<dir>/db.sqlite3``, migrated here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SETUP: dict[str, Path] = {}


def django_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Set Django up (first call) and return the directory of its configuration and database."""
    if "dir" in _SETUP:
        return _SETUP["dir"]
    pytest.importorskip("django")
    import django
    from django.core.management import call_command

    directory = tmp_path_factory.mktemp("django")
    chosen = {
        "DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
        "OIDC_ADAPTER_CONFIG": str(directory / "adapter.toml"),
        "DJANGO_DATABASE": str(directory / "db.sqlite3"),
    }
    saved = {name: os.environ.get(name) for name in chosen}
    os.environ.update(chosen)
    try:
        django.setup()  # reads the settings module, and with it the variables above
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    call_command("migrate", verbosity=0, interactive=False)
    _SETUP["dir"] = directory
    return directory


def write_adapter_config(directory: Path, issuer: str, secret: str, extra: str = "") -> Path:
    """The example's adapter configuration for a test identity server."""
    path = directory / "adapter.toml"
    path.write_text(
        f'issuer = "{issuer}"\nclient-id = "django-app"\npublic-paths = ["/"]\n'
        'scope = "openid profile email roles"\n'
        'session-secret = "django-example-session-secret-0123456789"\n'
        'token-audiences = ["urn:oidc-adapter:test-api"]\n'
        f"{extra}"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{secret}"\n'
    )
    path.chmod(0o600)
    return path


def client(app_url: str, secret: str) -> dict[str, object]:
    """The identity server's registration of the example."""
    return {
        "client_id": "django-app",
        "client_secret": secret,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [f"{app_url}/oidc/callback"],
        "post_logout_redirect_uris": [f"{app_url}/oidc/logout"],
    }
