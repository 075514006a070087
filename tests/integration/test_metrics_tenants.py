"""Metrics of an app with several tenants (docs/metrics.md, docs/tenants.md): every series
carries the configured tenant's name. Two real identity servers (realms ``acme`` and
``globex``), each fetching its own tenant's ``/k_jwks`` to check that tenant's private_key_jwt
assertions; the app served over HTTP in both shells. A sign-in at acme counts (sign-in,
token call, ``/k_jwks`` answers, first fetch of the key set) under ``tenant="acme"`` and
nothing under ``tenant="globex"``; key states, the staged switch and the reloads are reported
per tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CollectorRegistry

from adapter import OIDCMiddleware, OIDCWSGIMiddleware
from adapter.metrics import enable
from tests.app_server import free_port, serve
from tests.idp_server import IdentityServer
from tests.integration.test_several_realms import ACCOUNTS, SESSION_SECRET, app_asgi, app_wsgi
from tests.web_client import Browser, Stack

TENANTS = ("acme", "globex")
STAGED = "2099-01-01T00:00:00Z"  # acme's second key: next until then


def idp_client(url: str, name: str) -> dict[str, Any]:
    """Tenant ``name``'s client at its realm: private_key_jwt, keys from its own /k_jwks."""
    base = f"{url}/{name}"
    return {
        "client_id": "web",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks_uri": f"{base}/k_jwks",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [f"{base}/oidc/callback"],
        "post_logout_redirect_uris": [f"{base}/oidc/logout"],
    }


def write_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def write_tenants(servers: dict[str, IdentityServer], directory: Path) -> Path:
    """A tenants file: acme with an active key and one staged, globex with one key."""
    (directory / "tenants").mkdir()
    for name, idp in servers.items():
        keys = [f"{name}-1.pem"] + ([f"{name}-2.pem"] if name == "acme" else [])
        for key in keys:
            write_key(directory / "tenants" / key)
        tables = f'\n[[credentials.keys]]\nkeystore = "{keys[0]}"\n'
        if len(keys) > 1:
            tables += f'\n[[credentials.keys]]\nkeystore = "{keys[1]}"\nactivate-at = "{STAGED}"\n'
        tenant = directory / "tenants" / f"{name}.toml"
        tenant.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\n'
            '[credentials]\nmethod = "private_key_jwt"\n' + tables
        )
        tenant.chmod(0o600)
    path = directory / "adapter.toml"
    path.write_text(
        f'session-secret = "{SESSION_SECRET}"\npublic-paths = ["/"]\n'
        'scope = "openid profile email roles"\n'
        + "".join(
            f'[[tenants]]\nname = "{name}"\nconfig = "tenants/{name}.toml"\n'
            f'path-prefix = "/{name}"\n'
            for name in TENANTS
        )
    )
    path.chmod(0o600)
    return path


@dataclass
class App:
    middleware: OIDCMiddleware | OIDCWSGIMiddleware
    registry: CollectorRegistry
    servers: dict[str, IdentityServer]
    browser: Browser
    url: str

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def kids(self, tenant: str) -> set[str]:
        site = next(site for site in self.middleware.tenancy if site.name == tenant)
        _, core = site.shell.core()
        return {key.kid for key in core.ring.keys}


@pytest.fixture(params=["asgi", "wsgi"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    shell = str(request.param)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                IdentityServer(
                    [idp_client(url, name)],
                    tmp_dir=tmp_path,
                    issuer=f"http://127.0.0.1:{{port}}/realms/{name}",
                    accounts=ACCOUNTS,
                )
            )
            for name in TENANTS
        }
        path = write_tenants(servers, tmp_path)
        middleware: OIDCMiddleware | OIDCWSGIMiddleware
        if shell == "asgi":
            middleware = OIDCMiddleware(app_asgi, path)
        else:
            middleware = OIDCWSGIMiddleware(app_wsgi, path)
            stack.callback(middleware.close)
        registry = CollectorRegistry()
        enable(middleware, registry=registry)
        stack.enter_context(serve(shell, middleware, port))
        browser = Browser(
            Stack(servers["acme"], path, {"http": httpx.HTTPTransport()}), "http", url
        )
        stack.callback(browser.http.close)
        yield App(middleware, registry, servers, browser, url)


def sign_in(app: App, tenant: str, login: str) -> httpx.Response:
    app.browser.idp = app.servers[tenant]
    return app.browser.log_in(f"/{tenant}/profile", login)


def test_key_states_are_reported_per_tenant(app: App) -> None:
    acme, globex = app.kids("acme"), app.kids("globex")
    assert (len(acme), len(globex)) == (2, 1)
    assert not acme & globex
    states = {
        (labels["tenant"], labels["kid"], labels["state"])
        for family in app.registry.collect()
        if family.name == "oidc_adapter_key_state"
        for labels in (sample.labels for sample in family.samples)
    }
    (staged,) = [kid for tenant, kid, state in states if state == "next"]
    assert states == {
        *(("acme", kid, "active" if kid != staged else "next") for kid in acme),
        *(("globex", kid, "active") for kid in globex),
    }
    switch = "oidc_adapter_next_key_switch_timestamp_seconds"
    when = datetime.fromisoformat(STAGED.replace("Z", "+00:00")).astimezone(UTC)
    assert app.value(switch, tenant="acme") == when.timestamp()
    assert app.value(switch, tenant="globex") == 0.0
    assert app.value(switch, tenant="") is None  # no plain configuration here
    fetched = "oidc_adapter_jwks_fetched_after_change_timestamp_seconds"
    assert app.value(fetched, tenant="acme") == app.value(fetched, tenant="globex") == 0.0


def test_what_one_tenant_does_counts_under_its_name_only(app: App) -> None:
    jwks, logins = "oidc_adapter_jwks_answers_total", "oidc_adapter_logins_total"
    fetched = "oidc_adapter_jwks_fetched_after_change_timestamp_seconds"
    page = sign_in(app, "acme", "alice")
    assert (page.json()["user"], page.json()["tenant"]) == ("alice", "acme")
    assert app.value(logins, tenant="acme", result="ok") == 1
    assert app.value(logins, tenant="globex", result="ok") is None
    fetches = app.value(jwks, tenant="acme", status="200")
    assert fetches is not None, "acme's server fetched acme's /k_jwks"
    assert fetches >= 1
    assert app.value(jwks, tenant="globex", status="200") is None
    calls = "oidc_adapter_token_call_seconds_count"
    assert (app.value(calls, tenant="acme", result="ok") or 0) >= 1
    assert app.value(calls, tenant="globex", result="ok") is None
    assert (app.value(fetched, tenant="acme") or 0) > 0
    assert app.value(fetched, tenant="globex") == 0.0

    # The app's own fetches and revalidations of acme's /k_jwks: acme's too.
    first = app.browser.get("/acme/k_jwks")
    again = app.browser.get("/acme/k_jwks", headers={"If-None-Match": first.headers["etag"]})
    assert (first.status_code, again.status_code) == (200, 304)
    assert app.value(jwks, tenant="acme", status="200") == fetches + 1
    assert app.value(jwks, tenant="acme", status="304") == 1
    assert app.value(jwks, tenant="globex", status="304") is None

    page = sign_in(app, "globex", "bob")
    assert (page.json()["user"], page.json()["tenant"]) == ("bob", "globex")
    assert app.value(logins, tenant="globex", result="ok") == 1
    assert app.value(logins, tenant="acme", result="ok") == 1
    assert (app.value(jwks, tenant="globex", status="200") or 0) >= 1
    assert (app.value(fetched, tenant="globex") or 0) > 0

    assert app.middleware.reload()
    for tenant in TENANTS:
        assert app.value("oidc_adapter_reloads_total", tenant=tenant, result="ok") == 1
    assert app.value("oidc_adapter_reloads_total", tenant="", result="ok") is None
