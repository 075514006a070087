"""Several realms in one app with sessions in Redis (issue 22): "With the Redis store, two
processes, two tenants: a back-channel logout from acme's server ends acme's session on both
processes and touches no globex session."

A real ``redis-server``, two real identity servers (issuers ``.../realms/acme`` and
``.../realms/globex``) and ONE tenants file served by TWO processes of the Starlette example.
alice signs in at ``/acme/`` on process A, bob at ``/globex/`` on process B; each session is
then carried to the other process. alice logs out at acme's server, whose back-channel call
reaches process A only: her session ends on both processes, bob's lives on on both.

In-process beside it: the tenants of one middleware on one Redis share one registry (one pool)
and one subscriber thread, which tells every tenant each event; a tenant on another prefix has
its own; closing the middleware stops each subscriber once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from adapter import OIDCWSGIMiddleware
from examples import demo
from tests.app_server import free_port, hello
from tests.idp_server import IdentityServer, ensure_installed
from tests.redis_server import RedisServer
from tests.web_client import Browser, Stack, web_client

TENANTS = ("acme", "globex")
SECRETS = {"acme": "acme-redis-client-secret-" + "a" * 40, "globex": "globex-redis-" + "g" * 40}
SESSION_SECRET = "tenants-redis-session-secret-" + "s" * 24
ACCOUNTS: dict[str, dict[str, Any]] = {"alice": {}, "bob": {}}


@dataclass
class World:
    servers: dict[str, IdentityServer]
    redis: RedisServer
    directory: Path
    a: str  # process A's URL: acme's back-channel logout URL is there
    b: str  # process B's URL: globex's is there


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    ensure_installed()
    directory = tmp_path_factory.mktemp("tenants-redis")
    a, b = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    home = {"acme": a, "globex": b}  # where each server sends its back-channel logouts
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(directory / "redis"))
        servers = {
            name: stack.enter_context(
                IdentityServer(
                    [
                        web_client(
                            SECRETS[name],
                            redirect_uris=[f"{url}/{name}/oidc/callback" for url in (a, b)],
                            post_logout_redirect_uris=[f"{url}/{name}/" for url in (a, b)],
                            backchannel_logout_uri=f"{home[name]}/{name}/oidc/backchannel-logout",
                            backchannel_logout_session_required=True,
                        )
                    ],
                    tmp_dir=directory,
                    issuer=f"http://127.0.0.1:{{port}}/realms/{name}",
                    accounts=ACCOUNTS,
                )
            )
            for name in TENANTS
        }
        yield World(servers, redis, directory, a, b)


def write_tenants(world: World, directory: Path, extra: dict[str, str] | None = None) -> Path:
    """One tenants file (sessions in Redis) over a native file per tenant; ``extra`` adds
    tenants (name: the lines of its own file, after its issuer's)."""
    (directory / "tenants").mkdir(parents=True, exist_ok=True)
    files = {
        name: f'issuer = "{idp.issuer}"\nclient-id = "web"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRETS[name]}"\n'
        for name, idp in world.servers.items()
    }
    for name, lines in (extra or {}).items():
        files[name] = f'issuer = "{world.servers["acme"].issuer}"\n{lines}'
    for name, text in files.items():
        (directory / "tenants" / f"{name}.toml").write_text(text)
        (directory / "tenants" / f"{name}.toml").chmod(0o600)
    path = directory / "adapter.toml"
    path.write_text(
        f'session-secret = "{SESSION_SECRET}"\npublic-paths = ["/"]\n'
        'scope = "openid profile email"\nsession-store = "redis"\n'
        f'redis-url = "{world.redis.url}"\nredis-prefix = "realms:"\n'
        + "".join(
            f'[[tenants]]\nname = "{n}"\nconfig = "tenants/{n}.toml"\npath-prefix = "/{n}"\n'
            for n in files
        )
    )
    path.chmod(0o600)
    return path


def user_at(origin: str, tenant: str, cookies: dict[str, str]) -> str | None:
    """Who ``cookies`` sign in at ``tenant``'s profile on the process at ``origin`` (``None``:
    nobody, 401); a fresh client each time, so nothing but these cookies goes."""
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    page = httpx.get(
        f"{origin}/{tenant}/profile",
        headers={"Cookie": header, "Accept": "application/json"},
        follow_redirects=False,
    )
    if page.status_code == 401:
        return None
    assert page.status_code == 200, (origin, tenant, page.status_code, page.text)
    return page.text.split("<p id='name'>", 1)[1].split("</p>", 1)[0]


def eventually(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll ``condition`` until it holds (``False`` after ``timeout``); the condition is the
    synchronisation point, the short back-off between polls only spares the CPU."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return True


def log_out_at_the_server(browser: Browser, idp: IdentityServer) -> None:
    """The user ends her session at the identity server itself (its logout page)."""
    end = browser.http.get(idp.metadata["end_session_endpoint"], params={"client_id": "web"})
    form = end.text.split('action="', 1)[1].split('"', 1)[0]
    xsrf = end.text.split('name="xsrf" value="', 1)[1].split('"', 1)[0]
    done = browser.http.post(urljoin(str(end.url), form), data={"xsrf": xsrf, "logout": "yes"})
    assert done.status_code in (200, 302, 303), done.text


def test_a_back_channel_logout_at_acme_ends_acme_on_both_processes_only(
    world: World, tmp_path: Path
) -> None:
    config = write_tenants(world, tmp_path)
    processes = [
        demo.start_app("starlette", config, int(url.rsplit(":", 1)[1]))
        for url in (world.a, world.b)
    ]
    with ExitStack() as stack:
        stack.callback(demo.stop, processes)
        for url in (world.a, world.b):
            demo.wait_until_up(f"{url}/", processes)
        # Two browsers (one cookie jar each: both servers are on 127.0.0.1, whose cookies one
        # jar would mix): alice at acme on process A, bob at globex on process B.
        browsers = {}
        for tenant, login, origin in (("acme", "alice", world.a), ("globex", "bob", world.b)):
            transport = httpx.HTTPTransport()
            browser = Browser(
                Stack(world.servers[tenant], config, {"http": transport}), "http", origin
            )
            stack.callback(browser.http.close)
            browser.idp = world.servers[tenant]
            page = browser.log_in(f"/{tenant}/profile", login)
            assert page.status_code == 200, page.text
            assert f"<p id='name'>{login}</p>" in page.text
            browsers[tenant] = browser
        alice = {"oidc_session_acme": browsers["acme"].session_cookies()["oidc_session_acme"]}
        bob = {"oidc_session_globex": browsers["globex"].session_cookies()["oidc_session_globex"]}
        # Each session is known on both processes (and is nothing at the other tenant).
        for origin in (world.a, world.b):
            assert user_at(origin, "acme", alice) == "alice"
            assert user_at(origin, "globex", bob) == "bob"
        assert (
            user_at(world.a, "globex", {"oidc_session_globex": alice["oidc_session_acme"]}) is None
        )

        log_out_at_the_server(browsers["acme"], world.servers["acme"])
        backchannel = f'"url":"{world.a}/acme/oidc/backchannel-logout","status":200'
        assert world.servers["acme"].wait_for_log(backchannel, timeout=10), "acme told process A"

        for origin in (world.a, world.b):
            assert eventually(lambda at=origin: user_at(at, "acme", alice) is None), (
                f"{origin}: alice's acme session ended"
            )
        for origin in (world.a, world.b):
            assert user_at(origin, "globex", bob) == "bob", f"{origin}: bob's globex session lives"
        assert "backchannel" not in world.servers["globex"].logs(), "globex's server was not asked"


def subscriber_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "oidc-session-events"}


def test_tenants_on_one_redis_share_one_registry_and_one_subscriber(
    world: World, tmp_path: Path
) -> None:
    # initech (another client of acme's realm) keeps its sessions under a prefix of its own.
    initech = 'client-id = "initech"\nredis-prefix = "initech:"\n'
    initech += '[credentials]\nmethod = "client_secret_basic"\nsecret = "' + "i" * 40 + '"\n'
    config = write_tenants(world, tmp_path, {"initech": initech})
    before = subscriber_threads()
    middleware = OIDCWSGIMiddleware(hello, config)
    try:
        sites = {site.name: site.shell for site in middleware.tenancy}
        acme, globex, other = sites["acme"], sites["globex"], sites["initech"]
        assert acme.registry is not None
        assert acme.registry is globex.registry, "one registry (one pool) for one Redis"
        assert acme.store is acme.registry.store
        assert other.registry is not None
        assert other.registry is not acme.registry, "another prefix: a registry of its own"
        assert acme.subscriber is not None
        assert acme.subscriber is globex.subscriber, "one subscriber for one Redis"
        assert other.subscriber is not None
        assert other.subscriber is not acme.subscriber
        started = subscriber_threads() - before
        assert started == {acme.subscriber.thread, other.subscriber.thread}, started
        for shell in sites.values():
            assert shell.wait_until_live(10), "each tenant hears its Redis"

        # One event on the shared channel reaches both tenants on it (each skips another
        # app's), and not the tenant on the other prefix.
        heard = {name: shell.events_applied for name, shell in sites.items()}
        event = json.dumps({"t": "changed", "sid": "somebody-elses", "app": "0" * 16})
        acme.registry.store._sync.publish(acme.registry.channel, event)
        assert acme.wait_for_events(heard["acme"] + 1, timeout=5)
        assert globex.wait_for_events(heard["globex"] + 1, timeout=5)
        assert other.events_applied == heard["initech"]

        # A reload may not move a tenant to another Redis prefix: refused, the registry kept.
        (tmp_path / "tenants" / "globex.toml").write_text(
            (tmp_path / "tenants" / "globex.toml")
            .read_text()
            .replace("[credentials]", 'redis-prefix = "moved:"\n[credentials]')
        )
        assert middleware.reload() is False
        status = globex.status
        assert status is not None
        assert "redis-prefix" in str(status.last_error)
        assert globex.registry is acme.registry
    finally:
        middleware.close()
        middleware.close()  # twice: nothing more to stop
    for thread in started:
        thread.join(timeout=5)
        assert not thread.is_alive(), "closing the middleware stopped each subscriber"
    for shell in (acme, globex):
        assert not shell.live, "closed: nothing is heard, so nothing is remembered"
