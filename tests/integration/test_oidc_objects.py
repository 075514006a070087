"""The FastAPI and Flask ``OIDC`` objects reach the status, reloads and metrics (issue 21,
newcomer's path; docs/metrics.md "From the framework integrations"): ``oidc.status``,
``oidc.reload()`` and ``adapter.metrics.enable(oidc.middleware)`` /
``enable(oidc.middleware(app))``, typed, without reaching into an undocumented attribute."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.reload import ReloadStatus

NEXT_SWITCH = "oidc_adapter_next_key_switch_timestamp_seconds"  # a plain app: tenant=""

CONFIG = """\
issuer = "https://sso.example.com/realms/shop"
client-id = "shop"
session-secret = "test-session-secret-0123456789abcdef0123"
[credentials]
method = "client_secret_basic"
secret = "s3cret"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "adapter.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def test_fastapi_oidc_status_reload_and_metrics(config: Path) -> None:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

    from adapter.integrations.fastapi import OIDC
    from adapter.metrics import enable

    oidc = OIDC(FastAPI(), config=config)
    assert isinstance(oidc.status, ReloadStatus)
    assert oidc.reload() is True
    assert oidc.status is not None
    assert oidc.status.reloads == 1
    config.write_text("issuer = ")  # broken: the old state keeps serving
    assert oidc.reload() is False
    assert oidc.status.last_error
    registry = CollectorRegistry()
    enable(oidc.middleware, registry=registry)
    assert registry.get_sample_value(NEXT_SWITCH, {"tenant": ""}) == 0.0


def test_flask_oidc_status_reload_and_metrics(config: Path) -> None:
    from flask import Flask
    from prometheus_client import CollectorRegistry

    from adapter.integrations.flask import OIDC
    from adapter.metrics import enable

    app = Flask(__name__)
    oidc = OIDC(app, config=config)
    assert isinstance(oidc.status, ReloadStatus), "one app: no app context needed"
    assert oidc.reload() is True
    with app.app_context():
        assert oidc.status is not None
        assert oidc.status.reloads == 1
    config.write_text("issuer = ")
    assert oidc.reload(app) is False
    assert oidc.status is not None
    assert oidc.status.last_error
    registry = CollectorRegistry()
    enable(oidc.middleware(app), registry=registry)
    assert registry.get_sample_value(NEXT_SWITCH, {"tenant": ""}) == 0.0


def test_flask_with_two_apps_asks_which(config: Path) -> None:
    from flask import Flask

    from adapter.integrations.flask import OIDC

    first, second = Flask("first"), Flask("second")
    oidc = OIDC(config=config)
    oidc.init_app(first)
    oidc.init_app(second)
    with pytest.raises(RuntimeError, match="not installed"):
        oidc.reload()  # two apps, no app context: which one?
    assert oidc.reload(second) is True
    with second.app_context():
        assert oidc.status is not None
        assert oidc.status.reloads == 1
