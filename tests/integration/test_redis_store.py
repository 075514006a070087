"""The Redis session store with a real ``redis-server`` and the real identity server.

Two middleware instances play two replicas (each with its own memory: its own remembered
decisions, ended-session record and refresh coordinator), sharing only Redis.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from adapter._shell import ShellSupport
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.protocol.tokens import BACKCHANNEL_LOGOUT_EVENT
from adapter.web.session import SessionCodec
from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.idp_server import IdentityServer
from tests.redis_server import RedisServer
from tests.reverse_proxy import TestCA
from tests.web_client import APP, Browser, Stack, signing_key, web_client

SECRET = "redis-store-client-secret-" + "r" * 40
SESSION_SECRET = "redis-store-session-secret-" + "q" * 24
REDIS_PASSWORD = "redis-password-" + "w" * 20


@dataclass
class World:
    idp: IdentityServer
    redis: RedisServer
    directory: Path
    key: rsa.RSAPrivateKey  # the identity server's signing key: logout tokens are signed here


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("redis-store")
    key, jwk = signing_key()
    web = web_client(SECRET, grant_types=["authorization_code", "refresh_token"])
    with (
        IdentityServer([web], tmp_dir=directory, jwks={"keys": [jwk]}) as idp,
        RedisServer(directory / "redis", password=REDIS_PASSWORD) as redis,
    ):
        yield World(idp, redis, directory, key)


def config(
    world: World, name: str = "adapter.toml", store: str = "redis", prefix: str | None = "test:"
) -> Path:
    """The app's configuration; ``prefix=None`` leaves ``redis-prefix`` at its default."""
    path = world.directory / name
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\nsession-store = "{store}"\n'
        'redis-url-env = "TEST_REDIS_URL"\n'
        + (f'redis-prefix = "{prefix}"\n' if prefix is not None else "")
        + f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@dataclass
class Replica:
    browser: Browser
    shell: ShellSupport  # its memory: remembered decisions, records, subscription


def start_replicas(
    world: World, shell: str, store: str, stack: ExitStack, prefix: str | None = "test:"
) -> list[Replica]:
    """Two replicas of one app in the given shell and session store, sharing only Redis."""
    path = config(world, f"{shell}-{store}.toml", store, prefix)
    return [replica_at(world.idp, path, shell, stack) for _ in range(2)]


def replica_at(idp: IdentityServer, path: Path, shell: str, stack: ExitStack) -> Replica:
    """One replica of the example app of ``shell`` with configuration ``path``, a browser
    for it, both closed by ``stack`` (a replica's Redis threads end with its test, never in
    a later one)."""
    if shell == "asgi":
        app = create_starlette_app(path)
        client = stack.enter_context(TestClient(app, base_url=APP))
        transport: httpx.BaseTransport = client._transport
        support = app.shell
    else:
        flask = create_flask_app(path)
        transport = httpx.WSGITransport(app=flask)
        support = flask.wsgi_app.shell  # type: ignore[attr-defined]
        stack.callback(flask.wsgi_app.close)  # type: ignore[attr-defined]
    browser = Browser(Stack(idp, path, {shell: transport}), shell)
    stack.callback(browser.http.close)
    return Replica(browser, support)


@pytest.fixture
def replicas(
    world: World, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[Browser, Browser]]:
    """Two replicas on the Redis store (the shell of the test's parameter), a browser each."""
    monkeypatch.setenv("TEST_REDIS_URL", world.redis.url)
    with ExitStack() as stack:
        first, second = start_replicas(world, request.param, "redis", stack)
        yield first.browser, second.browser


@pytest.fixture
def pair(
    world: World, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[list[Replica]]:
    """Two replicas of ``(shell, store)``, both subscribed to each other's session events."""
    monkeypatch.setenv("TEST_REDIS_URL", world.redis.url)
    shell, store = request.param
    with ExitStack() as stack:
        replicas = start_replicas(world, shell, store, stack)
        for replica in replicas:
            replica.browser.get("/")  # the first request starts the subscriber
            assert replica.shell.wait_until_live(10), "subscribed to the session events"
        yield replicas


@pytest.mark.parametrize("replicas", ["asgi", "wsgi"], indirect=True)
def test_a_session_from_one_replica_is_known_on_the_other(
    replicas: tuple[Browser, Browser],
) -> None:
    first, second = replicas
    assert first.log_in().status_code == 200
    cookies = first.session_cookies()
    assert set(cookies) == {"oidc_session"}, "one small cookie: the session is in Redis"
    page = second.get("/profile", cookies=cookies)
    assert page.status_code == 200
    assert "<p id='name'>alice</p>" in page.text


@pytest.mark.parametrize("pair", [("asgi", "redis"), ("wsgi", "redis")], indirect=True)
def test_a_logout_on_one_replica_ends_the_session_on_the_other(pair: list[Replica]) -> None:
    """The other replica remembered the session's decision; the logout's event (published
    before the logout answers) makes it forget: its next request after the event is refused.
    Events travel through Redis, so the test waits for this one to arrive, not for time."""
    first, second = (replica.browser for replica in pair)
    first.log_in()
    cookies = first.session_cookies()
    for _ in range(2):  # decided, then remembered
        assert second.get("/profile", cookies=cookies).status_code == 200
    heard = pair[1].shell.events_applied
    out = first.post("/oidc/logout", data={"csrf": first.csrf()}, cookies=cookies)
    assert out.status_code == 302
    assert pair[1].shell.wait_for_events(heard + 1, timeout=10), "the end reached the other"
    after = second.get("/profile", cookies=cookies, headers={"Accept": "application/json"})
    assert after.status_code == 401


@pytest.mark.parametrize("pair", [("asgi", "redis"), ("wsgi", "redis")], indirect=True)
def test_redis_down_then_back(
    pair: list[Replica], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: protected pages 503 (one log line for the outage), public pages and /k_jwks
    200, never a 500 nor the password. Back: the same session works, without a restart.

    Until the subscription notices the outage (at once when Redis closes the connection, a
    health check later on a silent network), a session seen before is still answered from
    memory: the wait below is for that moment."""
    replica = pair[0]
    first = replica.browser
    first.log_in()
    cookies = first.session_cookies()
    world.redis.stop()
    assert replica.shell.wait_until_live(10, live=False), "the subscription saw the outage"
    try:
        with caplog.at_level(logging.WARNING, logger="adapter"):
            for _ in range(3):
                down = first.get("/profile", cookies=cookies, headers={"Accept": "*/json"})
                assert down.status_code == 503
                assert first.get("/", cookies=cookies).status_code == 200
                assert first.get("/k_jwks").status_code == 200
    finally:
        world.redis.start()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "session store at redis://127.0.0.1" in errors[0]
    assert REDIS_PASSWORD not in caplog.text
    with caplog.at_level(logging.WARNING, logger="adapter"):
        back = first.get("/profile", cookies=cookies)
    assert back.status_code == 200, "the session survived in Redis and works again"
    assert "answers again" in caplog.text


def test_a_wrong_redis_password_is_a_503_and_never_printed(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = world.redis.url.replace(REDIS_PASSWORD, "not-the-password-at-all")
    monkeypatch.setenv("TEST_REDIS_URL", wrong)
    app = create_flask_app(config(world, "wrong.toml"))
    first = Browser(
        Stack(world.idp, world.directory, {"wsgi": httpx.WSGITransport(app=app)}), "wsgi"
    )
    with caplog.at_level(logging.DEBUG, logger="adapter"):
        page = first.log_in()
    assert page.status_code == 503
    assert "not-the-password-at-all" not in caplog.text + page.text


PAIRS = [("asgi", "cookie"), ("wsgi", "cookie"), ("asgi", "redis"), ("wsgi", "redis")]


@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_a_logout_reaches_a_replica_that_remembered_the_session(pair: list[Replica]) -> None:
    """The other replica decided this session before (no round trip): the logout's event
    makes it forget at once, within the staleness window (Redis's delivery time)."""
    first, second = pair
    first.browser.log_in()
    cookies = first.browser.session_cookies()
    for _ in range(2):  # decided, then answered from memory
        assert second.browser.get("/profile", cookies=cookies).status_code == 200
    heard = second.shell.events_applied
    csrf = first.browser.csrf()
    started = time.monotonic()
    assert (
        first.browser.post("/oidc/logout", data={"csrf": csrf}, cookies=cookies).status_code == 302
    )
    assert second.shell.wait_for_events(heard + 1, timeout=5), "the logout was heard"
    refused = second.browser.get("/profile", cookies=cookies, headers={"Accept": "*/json"})
    elapsed = time.monotonic() - started
    assert refused.status_code == 401
    assert elapsed < 1.0, f"{elapsed:.3f} s from logout to refusal on the other replica"


@pytest.mark.parametrize("pair", [("asgi", "cookie"), ("wsgi", "cookie")], indirect=True)
def test_a_replica_that_starts_later_reads_the_logout(pair: list[Replica], world: World) -> None:
    """A process that never heard the event (it was not running) reads the record the first
    time it meets the session."""
    first, _ = pair
    first.browser.log_in()
    cookies = first.browser.session_cookies()
    assert (
        first.browser.post(
            "/oidc/logout", data={"csrf": first.browser.csrf()}, cookies=cookies
        ).status_code
        == 302
    )
    with ExitStack() as stack:
        late, _ = start_replicas(world, "wsgi", "cookie", stack)
        refused = late.browser.get("/profile", cookies=cookies, headers={"Accept": "*/json"})
        assert refused.status_code == 401


def logout_token(world: World, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": world.idp.issuer,
        "aud": "web",
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(12),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        **claims,
    }
    header = encode_header({"alg": "RS256", "kid": "server-1", "typ": "logout+jwt"})
    return sign_compact(header, body, make_signer("RS256", world.key))


@pytest.mark.parametrize("pair", PAIRS, indirect=True)
def test_a_back_channel_logout_on_one_replica_ends_the_session_on_the_other(
    pair: list[Replica], world: World
) -> None:
    first, second = pair
    first.browser.log_in(login="dave")
    cookies = first.browser.session_cookies()
    assert second.browser.get("/profile", cookies=cookies).status_code == 200
    heard = second.shell.events_applied
    token = logout_token(world, sub="dave")
    answer = first.browser.post("/oidc/backchannel-logout", data={"logout_token": token})
    assert answer.status_code == 200
    assert second.shell.wait_for_events(heard + 1, timeout=5)
    refused = second.browser.get("/profile", cookies=cookies, headers={"Accept": "*/json"})
    assert refused.status_code == 401
    replay = second.browser.post("/oidc/backchannel-logout", data={"logout_token": token})
    assert replay.status_code == 400, "its jti was seen, by the other replica"


@pytest.mark.parametrize("pair", [("asgi", "redis"), ("wsgi", "redis")], indirect=True)
def test_a_redis_session_seen_before_costs_no_round_trip(
    pair: list[Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    first.browser.log_in()
    cookies = first.browser.session_cookies()
    store = second.shell.store
    loads: list[str] = []
    load, load_async = store.load, store.load_async

    def counting(sid: str) -> Any:
        loads.append(sid)
        return load(sid)

    async def counting_async(sid: str) -> Any:
        loads.append(sid)
        return await load_async(sid)

    monkeypatch.setattr(store, "load", counting)
    monkeypatch.setattr(store, "load_async", counting_async)
    for _ in range(5):
        assert second.browser.get("/profile", cookies=cookies).status_code == 200
    assert len(loads) == 1, "read from Redis once, then answered from memory"


def aged(world: World, cookies: dict[str, str]) -> dict[str, str]:
    """The same cookie session with its access token expired (so the next request refreshes)."""
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"web\0{world.idp.issuer}")
    document = codec.open(cookies["oidc_session"], "session")
    assert document is not None
    document["d"]["exp"] = time.time() - 1
    return {"oidc_session": codec.seal(document, "session")}


def concurrently(pair: list[Replica], cookies: dict[str, str], count: int) -> list[httpx.Response]:
    """``count`` requests with these cookies at once, alternating between the replicas."""
    gate = threading.Barrier(count)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def request(replica: Replica) -> None:
        gate.wait()
        answer = replica.browser.get(
            "/profile", cookies=dict(cookies), headers={"Accept": "application/json"}
        )
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=request, args=(pair[i % 2],)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def refreshes(world: World) -> int:
    """The refreshes logged for every request answered so far (not a partial count)."""
    return world.idp.settled_logs().count('"grant_type":"refresh_token"')


@pytest.mark.parametrize("pair", [("asgi", "cookie"), ("wsgi", "cookie")], indirect=True)
def test_one_refresh_across_processes(pair: list[Replica], world: World) -> None:
    """20 concurrent requests of one session, spread over two replicas, each time its access
    token has expired: one refresh per expiry in all (the server rotates refresh tokens, so a
    second one would have ended the session), and every request keeps the session."""
    first, second = pair
    first.browser.log_in(login="erin")
    cookies = first.browser.session_cookies()
    for _round in range(3):
        cookies = aged(world, cookies)
        before = refreshes(world)
        answers = concurrently(pair, cookies, 20)
        assert [a.status_code for a in answers] == [200] * 20, "no request lost the session"
        assert refreshes(world) == before + 1, "exactly one refresh for this expiry"
        renewed = next(
            h
            for a in answers
            for h in a.headers.get_list("set-cookie")
            if h.startswith("oidc_session=v1")
        )
        cookies = {"oidc_session": renewed.split("=", 1)[1].split(";", 1)[0]}
    assert second.browser.get("/profile", cookies=cookies).status_code == 200


def test_rediss_trusts_the_deployments_truststore(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rediss://`` to a Redis whose certificate comes from an internal CA: trusted through
    the same ``truststore`` as the identity server; without it, a 503 (never the URL)."""
    ca = TestCA(tmp_path / "tls")
    with RedisServer(tmp_path / "redis-tls", tls=ca) as redis:
        monkeypatch.setenv("TEST_REDIS_URL", redis.url)
        for trusted in (True, False):
            path = config(world, f"tls-{trusted}.toml")
            if trusted:
                text = path.read_text().replace(
                    "[credentials]", f'truststore = "{ca.cert}"\n[credentials]', 1
                )
                path.write_text(text)
            app = create_flask_app(path)
            transport = httpx.WSGITransport(app=app)
            browser = Browser(Stack(world.idp, path, {"wsgi": transport}), "wsgi")
            page = browser.log_in()
            assert page.status_code == (200 if trusted else 503), trusted
            browser.http.close()


@pytest.mark.parametrize("pair", [("wsgi", "cookie")], indirect=True)
def test_a_replica_that_starts_later_reads_a_back_channel_logout(
    pair: list[Replica], world: World
) -> None:
    first, _ = pair
    first.browser.log_in(login="frank")
    cookies = first.browser.session_cookies()
    token = logout_token(world, sub="frank")
    assert (
        first.browser.post("/oidc/backchannel-logout", data={"logout_token": token}).status_code
        == 200
    )
    with ExitStack() as stack:
        late, _ = start_replicas(world, "asgi", "cookie", stack)
        refused = late.browser.get("/profile", cookies=cookies, headers={"Accept": "*/json"})
        assert refused.status_code == 401, "read from Redis when the session was first met"


@pytest.mark.parametrize("pair", [("wsgi", "cookie")], indirect=True)
def test_a_malformed_event_does_not_silence_the_subscriber(
    pair: list[Replica], world: World
) -> None:
    """Another app on the same prefix, or a bug, publishes junk: it is skipped, and the next
    real event still arrives (the process never trusts memory it can no longer keep true)."""
    import redis as redis_py

    first, second = pair
    heard = second.shell.events_applied
    with redis_py.Redis.from_url(world.redis.url) as client:
        client.publish("test:events", '{"t": "end", "sid": "x", "at": "oops"}')
        client.publish("test:events", "not json at all")
    first.browser.log_in()
    cookies = first.browser.session_cookies()
    assert second.browser.get("/profile", cookies=cookies).status_code == 200
    out = first.browser.post("/oidc/logout", data={"csrf": first.browser.csrf()}, cookies=cookies)
    assert out.status_code == 302
    assert second.shell.wait_for_events(heard + 1, timeout=5), "still listening"
    assert second.shell.live
    refused = second.browser.get("/profile", cookies=cookies, headers={"Accept": "*/json"})
    assert refused.status_code == 401
