"""The Redis session store with a real ``redis-server`` and the real identity server.

Two middleware instances play two replicas (each with its own memory: its own remembered
decisions, ended-session record and refresh coordinator), sharing only Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.idp_server import IdentityServer
from tests.redis_server import RedisServer
from tests.web_client import APP, Browser, Stack

SECRET = "redis-store-client-secret-" + "r" * 40
SESSION_SECRET = "redis-store-session-secret-" + "q" * 24
REDIS_PASSWORD = "redis-password-" + "w" * 20


@dataclass
class World:
    idp: IdentityServer
    redis: RedisServer
    directory: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("redis-store")
    web = {
        "client_id": "web",
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [f"{APP}/oidc/callback"],
        "post_logout_redirect_uris": [f"{APP}/"],
    }
    with (
        IdentityServer([web], tmp_dir=directory) as idp,
        RedisServer(directory / "redis", password=REDIS_PASSWORD) as redis,
    ):
        yield World(idp, redis, directory)


def config(world: World, name: str = "adapter.toml") -> Path:
    path = world.directory / name
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\nsession-store = "redis"\n'
        'redis-url-env = "TEST_REDIS_URL"\nredis-prefix = "test:"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def replicas(
    world: World, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[tuple[Browser, Browser]]:
    """Two replicas of one app (the shell of the test's parameter), one browser for each."""
    monkeypatch.setenv("TEST_REDIS_URL", world.redis.url)
    shell = request.param
    path = config(world)
    with ExitStack() as stack:
        browsers = []
        for _ in range(2):
            if shell == "asgi":
                client = stack.enter_context(TestClient(create_starlette_app(path), base_url=APP))
                transport: httpx.BaseTransport = client._transport
            else:
                transport = httpx.WSGITransport(app=create_flask_app(path))
            browser = Browser(Stack(world.idp, path, {shell: transport}), shell)
            stack.callback(browser.http.close)
            browsers.append(browser)
        yield browsers[0], browsers[1]


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


@pytest.mark.parametrize("replicas", ["asgi", "wsgi"], indirect=True)
def test_a_logout_on_one_replica_ends_the_session_on_the_other(
    replicas: tuple[Browser, Browser],
) -> None:
    first, second = replicas
    first.log_in()
    cookies = first.session_cookies()
    assert second.get("/profile", cookies=cookies).status_code == 200
    out = first.post("/oidc/logout", data={"csrf": first.csrf()}, cookies=cookies)
    assert out.status_code == 302
    after = second.get("/profile", cookies=cookies, headers={"Accept": "application/json"})
    assert after.status_code == 401


@pytest.mark.parametrize("replicas", ["asgi", "wsgi"], indirect=True)
def test_redis_down_then_back(
    replicas: tuple[Browser, Browser], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: protected pages 503 (one log line for the outage), public pages and /k_jwks
    200, never a 500 nor the password. Back: the same session works, without a restart."""
    first, _ = replicas
    first.log_in()
    cookies = first.session_cookies()
    world.redis.stop()
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
