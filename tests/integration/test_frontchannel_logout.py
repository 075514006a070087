"""Front-channel logout with the real identity server and a real Redis: two replicas of one app
(two middleware instances sharing only Redis), alice signed in on both with one server session
(single sign-on: the same ``sid``); the server's framed GET on one replica ends her sessions on
both, and the same request naming another issuer ends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.testclient import TestClient

from adapter import OIDCMiddleware, OIDCWSGIMiddleware
from adapter.web.session import SessionCodec
from tests.idp_server import IdentityServer
from tests.integration.test_redis_store import Replica, replica_at
from tests.redis_server import RedisServer
from tests.web_client import APP, Browser, Stack, web_client

SECRET = "frontchannel-client-secret-" + "f" * 40
SESSION_SECRET = "frontchannel-session-secret-" + "g" * 24
PATH = "/oidc/frontchannel-logout"


@dataclass
class World:
    idp: IdentityServer
    redis: RedisServer
    directory: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("frontchannel")
    web = web_client(
        SECRET,
        grant_types=["authorization_code", "refresh_token"],
        # The test server puts sid in ID tokens for clients that ask for it in a logout; it
        # offers back-channel logout only (this one is never logged out there).
        backchannel_logout_uri=f"{APP}/oidc/backchannel-logout",
        backchannel_logout_session_required=True,
    )
    with (
        IdentityServer([web], tmp_dir=directory) as idp,
        RedisServer(directory / "redis") as redis,
    ):
        yield World(idp, redis, directory)


def config(world: World, shell: str, store: str) -> Path:
    path = world.directory / f"{shell}-{store}.toml"
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\nsession-store = "{store}"\n'
        f'redis-url = "{world.redis.url}"\nredis-prefix = "fc-{shell}-{store}:"\n'
        "frontchannel-logout = true\n"
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.fixture(params=[("asgi", "redis"), ("wsgi", "redis"), ("asgi", "cookie")])
def pair(world: World, request: pytest.FixtureRequest) -> Iterator[list[Replica]]:
    """Two replicas of one app, subscribed to each other's session events."""
    shell, store = request.param
    path = config(world, shell, store)
    with ExitStack() as stack:
        replicas = [replica_at(world.idp, path, shell, stack) for _ in range(2)]
        for replica in replicas:
            replica.browser.get("/")  # the first request starts the subscriber
            assert replica.shell.wait_until_live(10), "subscribed to the session events"
        yield replicas


def claims_of(replica: Replica, cookies: dict[str, str], issuer: str) -> dict[str, Any]:
    """The session's ID-token claims, as the app keeps them (in its cookie, or in Redis)."""
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"web\0{issuer}")
    document = codec.open(cookies["oidc_session"], "session")
    assert document is not None
    data = document.get("d") or replica.shell.store.load(document["sid"])
    assert data is not None
    claims: dict[str, Any] = data["claims"]
    return claims


def single_sign_on(first: Browser, second: Browser) -> None:
    """The second browser holds the first one's session at the identity server (the same
    person in the same browser, at another replica): its login needs no password."""
    for cookie in first.http.cookies.jar:
        if not cookie.name.removeprefix("__Host-").startswith("oidc_"):
            second.http.cookies.jar.set_cookie(cookie)


def test_the_servers_framed_logout_ends_her_sessions_on_every_replica(
    pair: list[Replica], world: World
) -> None:
    one, two = pair
    assert one.browser.log_in().status_code == 200
    first = one.browser.session_cookies()
    single_sign_on(one.browser, two.browser)
    assert two.browser.log_in().status_code == 200
    second = two.browser.session_cookies()
    assert first != second, "two sessions of the app"
    sid = claims_of(one, first, world.idp.issuer)["sid"]
    assert claims_of(two, second, world.idp.issuer)["sid"] == sid, "one server session"
    for replica in pair:  # both known everywhere, decided once and then remembered
        for cookies in (first, second):
            for _ in range(2):
                assert replica.browser.get("/profile", cookies=cookies).status_code == 200

    # Another issuer (or none): 400, nothing ends.
    for query in ({"iss": "http://127.0.0.1:1/other", "sid": sid}, {"sid": sid}):
        refused = two.browser.get(f"{PATH}?{urlencode(query)}", cookies={})
        assert refused.status_code == 400
    assert one.browser.get("/profile", cookies=first).status_code == 200

    heard = one.shell.events_applied
    # The server's iframe: no cookies (third-party), only iss and sid.
    query = urlencode({"iss": world.idp.issuer, "sid": sid})
    answer = two.browser.get(f"{PATH}?{query}", cookies={}, headers={"Sec-Fetch-Dest": "iframe"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    origin = world.idp.issuer.split("/", 3)[:3]
    assert f"frame-ancestors {'/'.join(origin)}" in answer.headers["content-security-policy"]
    assert "x-frame-options" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert one.shell.wait_for_events(heard + 1, timeout=10), "the logout reached the other"
    json = {"Accept": "application/json"}
    for replica in pair:
        for cookies in (first, second):
            assert replica.browser.get("/profile", cookies=cookies, headers=json).status_code == 401


# --- several realms: each tenant's endpoint under its prefix, for its own issuer ----------------


@pytest.fixture(scope="module")
def realms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, IdentityServer]]:
    directory = tmp_path_factory.mktemp("frontchannel-realms")
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                IdentityServer(
                    [
                        web_client(
                            SECRETS[name],
                            base=f"{APP}/{name}",
                            backchannel_logout_uri=f"{APP}/{name}/oidc/backchannel-logout",
                            backchannel_logout_session_required=True,
                        )
                    ],
                    tmp_dir=directory,
                    issuer=f"http://127.0.0.1:{{port}}/realms/{name}",
                )
            )
            for name in ("acme", "globex")
        }


SECRETS = {"acme": "acme-fc-client-secret-" + "a" * 40, "globex": "globex-fc-secret-" + "g" * 40}


def write_tenants(realms: dict[str, IdentityServer], directory: Path) -> Path:
    (directory / "tenants").mkdir(exist_ok=True)
    for name, idp in realms.items():
        tenant = directory / "tenants" / f"{name}.toml"
        tenant.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRETS[name]}"\n'
        )
        tenant.chmod(0o600)
    path = directory / "adapter.toml"
    path.write_text(
        f'session-secret = "{SESSION_SECRET}"\npublic-paths = ["/"]\nfrontchannel-logout = true\n'
        '[[tenants]]\nname = "acme"\nconfig = "tenants/acme.toml"\npath-prefix = "/acme"\n'
        '[[tenants]]\nname = "globex"\nconfig = "tenants/globex.toml"\npath-prefix = "/globex"\n'
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("shell", ["asgi", "wsgi"])
def test_each_tenant_answers_for_its_own_issuer_under_its_prefix(
    realms: dict[str, IdentityServer], shell: str, tmp_path: Path
) -> None:
    from tests.integration.test_several_realms import app_asgi, app_wsgi

    path = write_tenants(realms, tmp_path)
    with ExitStack() as stack:
        if shell == "asgi":
            middleware: Any = OIDCMiddleware(app_asgi, path)
            transport: httpx.BaseTransport = stack.enter_context(
                TestClient(middleware, base_url=APP)
            )._transport
        else:
            middleware = OIDCWSGIMiddleware(app_wsgi, path)
            transport = httpx.WSGITransport(app=middleware)
            stack.callback(middleware.close)
        browser = Browser(Stack(realms["acme"], path, {shell: transport}), shell)
        stack.callback(browser.http.close)
        sids = {}
        for name in ("acme", "globex"):
            browser.idp = realms[name]
            assert browser.log_in(f"/{name}/profile").status_code == 200
            codec = SessionCodec(
                [SESSION_SECRET.encode()],
                context=f"web\0{realms[name].issuer}\0tenant\0{name}",
            )
            document = codec.open(browser.session_cookies()[f"oidc_session_{name}"], "session")
            assert document is not None
            sids[name] = document["d"]["claims"]["sid"]
        cookies = browser.session_cookies()

        def fc(prefix: str, issuer: str, sid: str) -> int:
            query = urlencode({"iss": issuer, "sid": sid})
            return browser.get(f"{prefix}{PATH}?{query}", cookies={}).status_code

        json = {"Accept": "application/json"}
        # globex's issuer at acme's endpoint, and no prefix at all: nothing ends.
        assert fc("/acme", realms["globex"].issuer, sids["acme"]) == 400
        assert browser.get(PATH, cookies={}).status_code != 200
        for name in ("acme", "globex"):
            assert browser.get(f"/{name}/profile", cookies=cookies, headers=json).status_code == 200
        assert fc("/acme", realms["acme"].issuer, sids["acme"]) == 200
        assert browser.get("/acme/profile", cookies=cookies, headers=json).status_code == 401
        assert browser.get("/globex/profile", cookies=cookies, headers=json).status_code == 200
