"""What the processes share through Redis belongs to one app, says when it could not be written,
and goes when a back-channel logout names it (issue 19, items 5-7).

Real parts only: a real ``redis-server`` with the default ``redis-prefix`` (apps of two test
identity servers share it), real identity servers, the examples in both shells. Redis is made to
refuse writes the two ways production meets: a read-only replica (``REPLICAOF`` a primary that
is not there, as after a failover) and out of memory (``maxmemory`` with ``noeviction``).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis as redis_py

from adapter.web.session import SessionCodec
from tests.app_server import free_port
from tests.idp_server import IdentityServer
from tests.integration.test_redis_store import (
    REDIS_PASSWORD,
    SECRET,
    SESSION_SECRET,
    Replica,
    World,
    logout_token,
    start_replicas,
)
from tests.integration.test_rp_checks import through_the_server
from tests.redis_server import RedisServer
from tests.web_client import Browser, signing_key, web_client

SHELLS = ["asgi", "wsgi"]
JSON = {"Accept": "application/json"}


@contextmanager
def realm(directory: Path, redis: RedisServer) -> Iterator[World]:
    """A test identity server of its own (its issuer, its key) and an app of it on ``redis``."""
    key, jwk = signing_key()
    client = web_client(
        SECRET,
        grant_types=["authorization_code", "refresh_token"],
        backchannel_logout_uri="http://127.0.0.1:8765/oidc/backchannel-logout",
        backchannel_logout_session_required=True,  # its ID tokens name the server session
    )
    with IdentityServer([client], tmp_dir=directory, jwks={"keys": [jwk]}) as idp:
        yield World(idp, redis, directory, key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("redis-records")
    with (
        RedisServer(directory / "redis", password=REDIS_PASSWORD) as redis,
        realm(directory, redis) as world,
    ):
        yield world


@pytest.fixture(scope="module")
def realm_b(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[World]:
    """Another issuer, whose app (client id "web" too) shares the first app's Redis."""
    with realm(tmp_path_factory.mktemp("realm-b"), world.redis) as other:
        yield other


@pytest.fixture
def client(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis_py.Redis]:
    """A plain Redis client (the test's own look at the keys), and the apps' Redis URL."""
    monkeypatch.setenv("TEST_REDIS_URL", world.redis.url)
    with redis_py.Redis.from_url(world.redis.url) as connection:
        yield connection


def replicas(world: World, shell: str, stack: ExitStack, store: str = "redis") -> list[Replica]:
    """Two replicas on the session store with the default prefix, both subscribed."""
    pair = start_replicas(world, shell, store, stack, prefix=None)
    for replica in pair:
        replica.browser.get("/")  # the first request starts the subscriber
        assert replica.shell.wait_until_live(10), "subscribed to the session events"
    return pair


def sign_in(browser: Browser, login: str) -> dict[str, str]:
    """A fresh sign-in of ``login`` (the browser forgets every cookie first, the identity
    server's too); the session cookies."""
    browser.http.cookies.clear()
    assert browser.log_in(login=login).status_code == 200
    return browser.session_cookies()


def session_id(world: World, cookies: dict[str, str]) -> str:
    """The session id the cookie carries (the Redis store's key is ``oidc:s:<id>``), or the
    id of the session it holds (cookie sessions)."""
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"web\0{world.idp.issuer}")
    document = codec.open(cookies["oidc_session"], "session")
    assert document is not None
    return str(document["sid"] if "sid" in document else document["d"]["sid"])


def remembered(replica: Replica, cookies: dict[str, str]) -> bool:
    return replica.shell.decisions.get(cookies["oidc_session"]) is not None


# -- 5. records belong to one issuer and client -----------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_a_logout_at_another_issuer_leaves_this_apps_user_signed_in(
    world: World, realm_b: World, client: redis_py.Redis, shell: str
) -> None:
    """Two apps of different issuers on one Redis, both with the default prefix: a genuine
    logout token of issuer B for user "alice" ends B's alice only. A's processes hear B's event
    and skip it (A's remembered decisions stay), and a process of A that starts later does not
    read B's record as A's."""
    with ExitStack() as stack:
        a1, a2 = replicas(world, shell, stack)
        b1, _ = replicas(realm_b, shell, stack)
        alice_a = sign_in(a1.browser, "alice")
        alice_b = sign_in(b1.browser, "alice")
        for _ in range(2):  # decided, then answered from memory
            assert a2.browser.get("/profile", cookies=alice_a).status_code == 200
        assert remembered(a2, alice_a)
        heard = a2.shell.events_applied
        token = logout_token(realm_b, sub="alice")
        assert b1.browser.post("/oidc/backchannel-logout", data={"logout_token": token}).is_success
        assert a2.shell.wait_for_events(heard + 1, timeout=5), "B's event reached A's process"
        assert remembered(a2, alice_a), "another app's event wiped nothing here"
        assert a2.browser.get("/profile", cookies=alice_a).status_code == 200
        assert a1.browser.get("/profile", cookies=alice_a).status_code == 200
        late, _ = start_replicas(world, shell, "redis", stack, prefix=None)
        assert late.browser.get("/profile", cookies=alice_a).status_code == 200, "read afresh"
        assert b1.browser.get("/profile", cookies=alice_b, headers=JSON).status_code == 401
    assert not client.keys("oidc:logout-sub:alice"), "no record without its app"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_logout_event_forgets_only_the_sessions_it_names(
    world: World, client: redis_py.Redis, shell: str
) -> None:
    """A back-channel logout of alice: every process forgets alice's remembered decisions,
    and only hers (bob's are still answered from memory)."""
    with ExitStack() as stack:
        first, second = replicas(world, shell, stack)
        alice = sign_in(first.browser, "alice")
        bob = sign_in(first.browser, "bob")
        for replica in (first, second):
            for cookies in (alice, bob):
                for _ in range(2):
                    assert replica.browser.get("/profile", cookies=cookies).status_code == 200
                assert remembered(replica, cookies)
        heard = second.shell.events_applied
        token = logout_token(world, sub="alice")
        assert first.browser.post(
            "/oidc/backchannel-logout", data={"logout_token": token}
        ).is_success
        assert second.shell.wait_for_events(heard + 1, timeout=5)
        for replica in (first, second):
            assert not remembered(replica, alice)
            assert remembered(replica, bob), "a decision the logout does not name stays"
            assert replica.browser.get("/profile", cookies=alice, headers=JSON).status_code == 401
            assert replica.browser.get("/profile", cookies=bob).status_code == 200


# -- 6. a logout that could not be recorded says so -------------------------------------------


@contextmanager
def refusing_writes(client: redis_py.Redis, how: str) -> Iterator[None]:
    """Redis refuses writes (and still answers reads) inside the block, and takes them again
    after it."""
    if how == "read-only":  # a replica of a primary that is not there: its data stays
        client.replicaof("127.0.0.1", str(free_port()))
    else:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")
    try:
        yield
    finally:
        if how == "read-only":
            client.replicaof("NO", "ONE")
        else:
            client.config_set("maxmemory", "0")


@pytest.mark.parametrize("how", ["read-only", "out-of-memory"])
@pytest.mark.parametrize("shell", SHELLS)
def test_a_logout_redis_refuses_is_a_503_and_is_told_when_redis_takes_writes(
    world: World, client: redis_py.Redis, shell: str, how: str
) -> None:
    """The logout ends the session here (its cookies cleared, this process refuses it) and
    says, with 503 and the sign-in error page, that the others could not be told; the end is
    written again until Redis takes it, and then reaches the other process, which refuses
    the cookie it remembered, and the session's data is gone from Redis."""
    with ExitStack() as stack:
        first, second = replicas(world, shell, stack)
        cookies = sign_in(first.browser, "carol")
        sid = session_id(world, cookies)
        for _ in range(2):
            assert second.browser.get("/profile", cookies=cookies).status_code == 200
        csrf = first.browser.csrf()
        heard = second.shell.events_applied
        with refusing_writes(client, how):
            out = first.browser.post(
                "/oidc/logout",
                data={"csrf": csrf},
                cookies=cookies,
                headers={"Accept": "text/html"},
            )
            assert out.status_code == 503
            assert out.headers["content-type"].startswith("text/html")
            assert "other servers could not be told" in out.text
            assert any(
                c.startswith("oidc_session=;") and "Max-Age=0" in c
                for c in out.headers.get_list("set-cookie")
            ), "signed out in the browser"
            assert first.browser.get("/profile", cookies=cookies, headers=JSON).status_code == 401
            assert client.exists(f"oidc:s:{sid}"), "Redis kept the session: it refused the end"
            assert registry_pending(first) == 1
            # Trying again finishes the logout at the identity server (a second POST here
            # would find no session): the page's link is the end-session URL with a state.
            retry = html.unescape(out.text.split('class="button" href="', 1)[1].split('"', 1)[0])
            assert retry.startswith(world.idp.metadata["end_session_endpoint"])
            assert "state=" in retry
            (pending,) = [
                c.split(";", 1)[0].split("=", 1)
                for c in out.headers.get_list("set-cookie")
                if c.startswith("oidc_logout=")
            ]
        assert second.shell.wait_for_events(heard + 1, timeout=10), "the end was written later"
        back = through_the_server(first.browser, retry)
        landing = first.browser.get(back, cookies={pending[0]: pending[1]})
        assert landing.status_code == 302, "this browser's own logout, confirmed on return"
        assert landing.headers["location"] == "/"
        for replica in (second, first):
            refused = replica.browser.get("/profile", cookies=cookies, headers=JSON)
            assert refused.status_code == 401
        assert not client.exists(f"oidc:s:{sid}")
        assert client.exists(f"oidc:ended:{sid}")
        assert registry_pending(first) == 0


def registry_pending(replica: Replica) -> int:
    assert replica.shell.registry is not None
    return len(replica.shell.registry.pending)


def until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll ``condition`` with a short back-off until it holds (``False`` after ``timeout``)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)  # back-off between polls; the condition is the synchronisation point
        delay = min(delay * 2, 0.2)
    return True


@pytest.mark.parametrize("shell", SHELLS)
def test_a_logout_while_redis_is_down_ends_a_cookie_session_and_is_told_later(
    world: World, client: redis_py.Redis, shell: str
) -> None:
    """Cookie sessions, Redis down (the subscription lost too): the logout still ends the
    session here and says 503; once Redis is back, the end reaches the other process."""
    with ExitStack() as stack:
        first, second = replicas(world, shell, stack, store="cookie")
        cookies = sign_in(first.browser, "grace")
        sid = session_id(world, cookies)
        csrf = first.browser.csrf()
        world.redis.stop()
        try:
            assert first.shell.wait_until_live(10, live=False)
            out = first.browser.post(
                "/oidc/logout",
                data={"csrf": csrf},
                cookies=cookies,
                headers={"Accept": "text/html"},
            )
            assert out.status_code == 503
            assert "other servers could not be told" in out.text
            assert first.browser.get("/profile", cookies=cookies, headers=JSON).status_code == 401
            assert registry_pending(first) == 1
        finally:
            world.redis.start()
        assert until(lambda: registry_pending(first) == 0), "written once Redis was back"
        assert client.exists(f"oidc:ended:{sid}")
        refused = second.browser.get("/profile", cookies=cookies, headers=JSON)
        assert refused.status_code == 401


# -- 7. a back-channel logout removes the session's data --------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_a_back_channel_logout_deletes_the_sessions_from_redis(
    world: World, client: redis_py.Redis, shell: str
) -> None:
    """By the server's session (``sid``): that session's data goes; by user (``sub``): every
    session of hers goes; another user's stays."""
    with ExitStack() as stack:
        first, second = replicas(world, shell, stack)
        dave = [sign_in(first.browser, "dave"), sign_in(second.browser, "dave")]
        erin = sign_in(first.browser, "erin")
        frank = sign_in(second.browser, "frank")
        sids = {name: session_id(world, c) for name, c in [("erin", erin), ("frank", frank)]}
        dave_sids = [session_id(world, c) for c in dave]
        for sid in [*dave_sids, *sids.values()]:
            assert client.exists(f"oidc:s:{sid}")
        data = client.get(f"oidc:s:{sids['erin']}")
        assert data is not None
        idp_sid = json.loads(data)["claims"]["sid"]

        token = logout_token(world, sid=idp_sid)
        assert second.browser.post(
            "/oidc/backchannel-logout", data={"logout_token": token}
        ).is_success
        assert not client.exists(f"oidc:s:{sids['erin']}"), "the server session's data is gone"
        token = logout_token(world, sub="dave")
        assert first.browser.post(
            "/oidc/backchannel-logout", data={"logout_token": token}
        ).is_success
        for sid in dave_sids:
            assert not client.exists(f"oidc:s:{sid}"), "every session of the user is gone"
        assert client.exists(f"oidc:s:{sids['frank']}"), "another user's session stays"
        profile = second.browser.get
        assert profile("/profile", cookies=erin, headers=JSON).status_code == 401  # its own
        # dave's logout came to the first replica: the second hears of it by Redis's pub/sub,
        # a moment later (what it remembered of dave's session is forgotten then).
        for cookies in dave:
            assert until(
                lambda c=cookies: profile("/profile", cookies=c, headers=JSON).status_code == 401
            ), "refused once the logout's event reaches this replica"
        assert second.browser.get("/profile", cookies=frank).status_code == 200


@pytest.mark.parametrize("shell", SHELLS)
def test_a_back_channel_logout_redis_refuses_ends_the_session_here_and_says_503(
    world: World, client: redis_py.Redis, shell: str
) -> None:
    """The server is told (503) that not every process heard it, and this process refuses the
    session from now on."""
    with ExitStack() as stack:
        first, _ = replicas(world, shell, stack)
        cookies = sign_in(first.browser, "heidi")
        for _ in range(2):
            assert first.browser.get("/profile", cookies=cookies).status_code == 200
        token = logout_token(world, sub="heidi")
        with refusing_writes(client, "read-only"):
            answer = first.browser.post("/oidc/backchannel-logout", data={"logout_token": token})
            assert answer.status_code == 503
            assert answer.json()["error"] == "temporarily_unavailable"
            assert first.browser.get("/profile", cookies=cookies, headers=JSON).status_code == 401
        # Redis never recorded its jti: sent again (by an admin's retry) it is told to all now.
        again = first.browser.post("/oidc/backchannel-logout", data={"logout_token": token})
        assert again.status_code == 200
        replay = first.browser.post("/oidc/backchannel-logout", data={"logout_token": token})
        assert replay.status_code == 400, "then the jti is known everywhere: a replay"
        assert first.browser.get("/profile", cookies=cookies, headers=JSON).status_code == 401
