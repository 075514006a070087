"""Several realms in one app, in a real browser (issue 22): two identity servers (issuers
``.../realms/acme`` and ``.../realms/globex``, keys of their own) and ONE example app (the
Starlette example, then the Flask one, each in its own test) with a tenant per path prefix,
each tenant a private_key_jwt client whose keys its server fetches from the tenant's own
``/k_jwks``; then the Starlette example with tenants by host (``127.0.0.1`` and
``localhost``). Chromium signs in as alice at acme and as bob at globex; each server fetched
only its own tenant's keys; acme's session cookie is no session at globex; a logout at one
leaves the other signed in."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from examples import demo
from tests.e2e.test_browser import browser, free_port, local_context, sign_in
from tests.idp_server import IdentityServer, ensure_installed

__all__ = ["browser"]  # the fixture, imported to be used here
TENANTS = ("acme", "globex")
HOSTS = {"acme": "127.0.0.1", "globex": "localhost"}  # by host: two names for loopback
CLIENT_ID = "demo-app"


def tenant_files(directory: Path, by: str, issuers: dict[str, str]) -> Path:
    """A keystore and a native configuration per tenant, and the tenants file over them."""
    (directory / "tenants").mkdir()
    password = secrets.token_urlsafe(18)
    (directory / "tenants" / "keystore.password").write_text(password + "\n")
    (directory / "tenants" / "keystore.password").chmod(0o600)
    for name in TENANTS:
        keystore = directory / "tenants" / f"{name}.p12"
        subprocess.run(
            [sys.executable, "-m", "adapter.cli", "keys", "generate", "--alias", name,
             "--out", str(keystore), "--store-password-env", "E2E_STORE_PASSWORD"],
            check=True, env={**os.environ, "E2E_STORE_PASSWORD": password},
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        tenant = directory / "tenants" / f"{name}.toml"
        tenant.write_text(
            f'issuer = "{issuers[name]}"\nclient-id = "{CLIENT_ID}"\n'
            'scope = "openid profile email roles"\n'
            'token-audiences = ["urn:oidc-adapter:test-api"]\n'
            '[credentials]\nmethod = "private_key_jwt"\n'
            f'[[credentials.keys]]\nkeystore = "{name}.p12"\n'
            f'password-file = "keystore.password"\nalias = "{name}"\n'
        )
        tenant.chmod(0o600)
    (directory / "session.secret").write_text(secrets.token_urlsafe(32) + "\n")
    (directory / "session.secret").chmod(0o600)
    path = directory / "adapter.toml"
    path.write_text(
        'session-secret-file = "session.secret"\npublic-paths = ["/"]\n'
        + "".join(
            f'[[tenants]]\nname = "{n}"\nconfig = "tenants/{n}.toml"\n'
            + (f'path-prefix = "/{n}"\n' if by == "prefix" else f'host = "{HOSTS[n]}"\n')
            for n in TENANTS
        )
    )
    path.chmod(0o600)
    return path


def client(base: str) -> dict[str, object]:
    """A tenant's client at its server: the app at ``base`` (under its prefix, or its host)."""
    return {
        "client_id": CLIENT_ID,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks_uri": f"{base}/k_jwks",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": [f"{base}/oidc/callback"],
        "post_logout_redirect_uris": [f"{base}/oidc/logout"],
    }


@dataclass
class Realms:
    app: str  # where the app listens
    by: str  # how tenants are chosen: "prefix" or "host"
    bases: dict[str, str]  # each tenant's pages
    servers: dict[str, IdentityServer]


@pytest.fixture(params=[("starlette", "prefix"), ("flask", "prefix"), ("starlette", "host")])
def realms(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Realms]:
    ensure_installed()
    flavor, by = request.param
    app_port = free_port()
    app = f"http://127.0.0.1:{app_port}"
    bases = {
        name: f"{app}/{name}" if by == "prefix" else f"http://{HOSTS[name]}:{app_port}"
        for name in TENANTS
    }
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                IdentityServer(
                    [client(bases[name])],
                    tmp_dir=tmp_path,
                    issuer=f"http://127.0.0.1:{{port}}/realms/{name}",
                    accounts=demo.USERS,
                )
            )
            for name in TENANTS
        }
        config = tenant_files(tmp_path, by, {n: s.issuer for n, s in servers.items()})
        process = demo.start_app(flavor, config, app_port)
        stack.callback(demo.stop, [process])
        demo.wait_until_up(f"{app}/", [process])
        yield Realms(app, by, bases, servers)


def test_two_realms_in_one_browser(browser: object, realms: Realms) -> None:
    servers, acme, globex = realms.servers, realms.bases["acme"], realms.bases["globex"]
    context = local_context(browser, also=tuple(realms.bases.values()))
    page = context.new_page()
    if realms.by == "prefix":
        page.goto(f"{realms.app}/")
        assert page.inner_text("#tenants").split() == ["/acme", "/globex"]

    page.goto(f"{acme}/profile")
    assert page.url.startswith(servers["acme"].issuer), page.url
    sign_in(page, "alice")
    page.wait_for_url(f"{acme}/profile")
    assert page.inner_text("#name") == "alice"

    page.goto(f"{globex}/profile")
    assert page.url.startswith(servers["globex"].issuer), page.url
    sign_in(page, "bob")
    page.wait_for_url(f"{globex}/profile")
    assert page.inner_text("#name") == "bob"

    page.goto(f"{acme}/profile")
    assert page.inner_text("#name") == "alice", "both sessions live in one browser"
    # Each server fetched its own tenant's keys to check that tenant's assertion, never the other's.
    for name, other in (("acme", "globex"), ("globex", "acme")):
        logs = servers[name].settled_logs()
        assert f'"url":"{realms.bases[name]}/k_jwks"' in logs, logs
        assert f"{realms.bases[other]}/k_jwks" not in logs

    # acme's session cookie, sent to globex's pages under globex's name: no session there.
    # (By prefix the cookies are named per tenant; by host each host has its own jar.)
    named = {n: f"oidc_session_{n}" if realms.by == "prefix" else "oidc_session" for n in TENANTS}
    jar = {(c["domain"], c["name"]): c["value"] for c in context.cookies()}
    held = {n: jar.get((urlsplit(realms.bases[n]).hostname, named[n])) for n in TENANTS}
    assert None not in held.values(), jar.keys()
    foreign = httpx.get(
        f"{globex}/profile",
        headers={"Cookie": f"{named['globex']}={held['acme']}"},
        follow_redirects=False,
    )
    assert foreign.status_code == 302
    assert foreign.headers["location"].startswith(urlsplit(globex).path + "/oidc/login")

    # A logout at acme ends acme's session only.
    page.click("#logout")
    home, issuer = f"{acme}/", servers["acme"].issuer
    page.wait_for_url(lambda url: url == home or url.startswith(issuer))
    if page.url.startswith(issuer):
        # The server asks to confirm when it still knows alice: both test servers are on
        # 127.0.0.1, and a browser keeps one cookie jar per host whatever the port, so bob's
        # sign-in at globex's server may have replaced alice's session cookie at acme's.
        page.click("button[name=logout]")
        page.wait_for_url(home)
    page.goto(f"{acme}/profile")
    assert page.url.startswith(servers["acme"].issuer), "signed out at acme"
    page.goto(f"{globex}/profile")
    assert page.inner_text("#name") == "bob", "still signed in at globex"
    context.close()
