"""Redis as production runs it: a primary, a replica and a Sentinel (Debian's ``redis-sentinel``)
on loopback ports, named by a ``redis+sentinel://`` URL, and a real failover.

Two middleware instances (an ASGI and a WSGI one, each with its own memory, registry and
subscriber) play two replicas of an app, signed in against the real identity server. The primary
is killed; the Sentinel promotes the replica. During the switch every request gets 200 or 503
(never a 500, never a signed-out 401); after it the session written before the failover works on
both, the refresh lock still allows one refresh per expiry, and a logout on one reaches the other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from adapter._shell import ShellSupport
from adapter.protocol.tokens import TokenSet
from adapter.stores.redis import RedisRegistry, RefreshLock, _dump
from adapter.web.session import SessionCodec
from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.idp_server import IdentityServer
from tests.integration.test_redis_store import Replica, concurrently
from tests.redis_server import RedisServer, SentinelServer
from tests.reverse_proxy import TestCA
from tests.web_client import APP, Browser, Stack, web_client

SECRET = "sentinel-client-secret-" + "s" * 40
SESSION_SECRET = "sentinel-session-secret-" + "t" * 24
REDIS_PASSWORD = "sentinel-redis-password-" + "u" * 16
SENTINEL_PASSWORD = "sentinel-own-password-" + "v" * 16
JSON = {"Accept": "application/json"}


def start_replicas(idp: IdentityServer, path: Path, stack: ExitStack) -> list[Replica]:
    """An ASGI and a WSGI replica of the app: both Redis clients (sync and asyncio) at work."""
    starlette = create_starlette_app(path)
    client = stack.enter_context(TestClient(starlette, base_url=APP))
    flask = create_flask_app(path)
    shells: list[tuple[str, httpx.BaseTransport, ShellSupport]] = [
        ("asgi", client._transport, starlette.shell),
        ("wsgi", httpx.WSGITransport(app=flask), flask.wsgi_app.shell),  # type: ignore[attr-defined]
    ]
    replicas = []
    for shell, transport, support in shells:
        browser = Browser(Stack(idp, path, {shell: transport}), shell)
        stack.callback(browser.http.close)
        stack.callback(support.close)
        replicas.append(Replica(browser, support))
    return replicas


class Traffic:
    """Requests of one session on both replicas, one after another, until stopped: the
    status of each (the ones a failover must keep to 200 or 503)."""

    def __init__(self, pair: list[Replica], cookies: dict[str, str]) -> None:
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pair, cookies), daemon=True)

    def _run(self, pair: list[Replica], cookies: dict[str, str]) -> None:
        turn = 0
        while not self._stop.is_set():
            replica = pair[turn % 2]
            answer = replica.browser.get("/profile", cookies=dict(cookies), headers=JSON)
            self.statuses[answer.status_code] += 1
            turn += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    web = web_client(SECRET, grant_types=["authorization_code", "refresh_token"])
    with IdentityServer([web], tmp_dir=tmp_path_factory.mktemp("sentinel-idp")) as server:
        yield server


def write_config(path: Path, idp: IdentityServer, extra: str = "") -> Path:
    """The app's configuration: sessions in Redis, the URL (and password) from the environment."""
    path.write_text(
        f'issuer = "{idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\nsession-store = "redis"\n'
        f'redis-url-env = "TEST_REDIS_URL"\nredis-prefix = "test:"\n{extra}'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, SentinelServer]]:
    with (
        RedisServer(tmp_path / "primary", password=REDIS_PASSWORD) as primary,
        RedisServer(tmp_path / "replica", password=REDIS_PASSWORD, replica_of=primary) as replica,
        SentinelServer(tmp_path / "sentinel", primary, password=SENTINEL_PASSWORD) as sentinel,
    ):
        yield primary, replica, sentinel


def test_a_sentinel_failover(
    cluster: tuple[RedisServer, RedisServer, SentinelServer],
    idp: IdentityServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary, replica, sentinel = cluster
    monkeypatch.setenv("TEST_REDIS_URL", sentinel.url)  # the password in the environment
    with ExitStack() as stack:
        pair = start_replicas(idp, write_config(tmp_path / "adapter.toml", idp), stack)
        first, second = pair
        with caplog.at_level(logging.INFO, logger="adapter"):
            for replica_ in pair:
                replica_.browser.get("/")  # the first request starts the subscriber
                assert replica_.shell.wait_until_live(10), "subscribed through the Sentinel"
            assert first.browser.log_in().status_code == 200
            cookies = first.browser.session_cookies()
            assert second.browser.get("/profile", cookies=cookies).status_code == 200
            # Written and replicated before the failover (WAIT: the replica has it all).
            assert primary.command("WAIT", "1", "5000").startswith(b":1")

            started = time.monotonic()
            with Traffic(pair, cookies) as traffic:
                primary.kill()
                for replica_ in pair:  # the subscription saw the primary go: nothing kept
                    assert replica_.shell.wait_until_live(10, live=False)
                assert sentinel.wait_for_new_primary(primary.port) == replica.port
                for replica_ in pair:  # re-subscribed, at the new primary
                    assert replica_.shell.wait_until_live(15), "the subscriber reconnected"
            switch = time.monotonic() - started
            assert sum(traffic.statuses.values()) > 0
            assert set(traffic.statuses) <= {200, 503}, traffic.statuses

            for replica_ in pair:  # the session written before the failover, on both
                assert replica_.browser.get("/profile", cookies=cookies).status_code == 200
            one_refresh_per_expiry(idp, pair, cookies)
            logout_reaches_the_other(pair, cookies)

    print(f"failover: {switch:.2f} s from the kill to both subscribers live; {traffic.statuses}")
    for secret in (REDIS_PASSWORD, SENTINEL_PASSWORD):
        assert secret not in caplog.text
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert all("redis+sentinel://127.0.0.1:" in e for e in errors), errors


def one_refresh_per_expiry(
    idp: IdentityServer, pair: list[Replica], cookies: dict[str, str]
) -> None:
    """Twice: the session's access token expires (in Redis, on the new primary); 20 requests at
    once over both replicas make exactly one refresh, and none loses the session."""
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"web\0{idp.issuer}")
    sealed = codec.open(cookies["oidc_session"], "session")
    assert sealed is not None
    sid = sealed["sid"]
    store, registry = pair[0].shell.store, pair[0].shell.registry
    assert registry is not None
    for _round in range(2):
        data = store.load(sid)
        assert data is not None
        data["exp"] = time.time() - 1
        store.save(sid, data, ttl=3600)
        heard = [replica.shell.events_applied for replica in pair]
        registry.perform("changed", sid=sid)  # every replica forgets what it decided
        for replica, count in zip(pair, heard, strict=True):
            assert replica.shell.wait_for_events(count + 1, timeout=5)
        before = _count(idp.settled_logs())
        answers = concurrently(pair, cookies, 20)
        assert [a.status_code for a in answers] == [200] * 20, "no request lost the session"
        # All 20 were answered (each after its own refresh, or after waiting for one), so
        # every refresh they made is logged once the server's log has settled.
        assert _count(idp.settled_logs()) == before + 1, "exactly one refresh for this expiry"


def _count(logs: str) -> int:
    return logs.count('"grant_type":"refresh_token"')


def logout_reaches_the_other(pair: list[Replica], cookies: dict[str, str]) -> None:
    first, second = pair
    for _ in range(2):  # decided, then answered from memory
        assert second.browser.get("/profile", cookies=cookies).status_code == 200
    heard = second.shell.events_applied
    page = first.browser.get("/profile", cookies=cookies).text
    csrf = page.split("name='csrf' value='", 1)[1].split("'", 1)[0]
    out = first.browser.post("/oidc/logout", data={"csrf": csrf}, cookies=cookies)
    assert out.status_code == 302
    assert second.shell.wait_for_events(heard + 1, timeout=5), "the logout was heard"
    refused = second.browser.get("/profile", cookies=cookies, headers=JSON)
    assert refused.status_code == 401


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_refresh_lock_looks_again_once_taken(
    cluster: tuple[RedisServer, RedisServer, SentinelServer],
    monkeypatch: pytest.MonkeyPatch,
    flavour: str,
) -> None:
    """The holder stores its result and lets go between a waiting process's look for a result
    and its try for the lock: that process takes the lock, and must find the result there
    instead of spending the old refresh token a second time (the server would end the session).
    Timing-dependent under load in the failover test; made certain here."""
    registry = RedisRegistry(cluster[2].url, "lock-test:")
    lock = RefreshLock(registry)
    _, result_key = lock._keys("session:digest")
    theirs = TokenSet.from_response({"access_token": "theirs", "expires_in": 300})
    store, looks = registry.store, []

    def after_look(answer: Any) -> Any:
        """The first look at the result finds nothing; then the holder finishes."""
        looks.append(answer)
        if len(looks) == 1:
            store._sync.set(result_key, _dump(theirs), px=10_000)
        return answer

    call, call_async = store._call, store._call_async

    def looking(command: Any, *args: Any, **kwargs: Any) -> Any:
        answer = call(command, *args, **kwargs)
        return after_look(answer) if args == (result_key,) else answer

    async def looking_async(command: Any, *args: Any, **kwargs: Any) -> Any:
        answer = await call_async(command, *args, **kwargs)
        return after_look(answer) if args == (result_key,) else answer

    def refresh() -> TokenSet:
        raise AssertionError("the old refresh token was spent a second time")

    async def refresh_async() -> TokenSet:
        return refresh()

    try:
        if flavour == "sync":
            monkeypatch.setattr(store, "_call", looking)
            tokens = lock.run("session:digest", refresh)
        else:
            monkeypatch.setattr(store, "_call_async", looking_async)
            tokens = asyncio.run(lock.run_async("session:digest", refresh_async))
        assert tokens.access_token == "theirs"
        assert len(looks) == 2, "looked again once the lock was taken"
        lock_key, _ = lock._keys("session:digest")
        assert store._sync.get(lock_key) is None, "and let it go"
    finally:
        store._sync.delete(result_key)
        registry.store.close()


def test_rediss_sentinel_is_tls_to_the_sentinels_and_the_primary(
    idp: IdentityServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rediss+sentinel://``: Sentinel and primary both TLS only, with certificates of an
    internal CA trusted through ``truststore`` (as for the identity server); without it, 503."""
    ca = TestCA(tmp_path / "tls")
    with (
        RedisServer(tmp_path / "primary", password=REDIS_PASSWORD, tls=ca) as primary,
        SentinelServer(tmp_path / "sentinel", primary, replicas=0) as sentinel,
    ):
        assert sentinel.url.startswith("rediss+sentinel://")
        monkeypatch.setenv("TEST_REDIS_URL", sentinel.url)
        for trusted in (True, False):
            extra = f'truststore = "{ca.cert}"\n' if trusted else ""
            path = write_config(tmp_path / f"tls-{trusted}.toml", idp, extra)
            app = create_flask_app(path)
            browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=app)}), "wsgi")
            try:
                assert browser.log_in().status_code == (200 if trusted else 503), trusted
            finally:
                browser.http.close()
                app.wsgi_app.shell.close()  # type: ignore[attr-defined]
