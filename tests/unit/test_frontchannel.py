"""Front-channel logout (OpenID Connect Front-Channel Logout 1.0) through the web core: the
server's framed GET with ``iss`` and ``sid`` ends the sessions of that server session, whatever
cookies come with it (none, usually); anything else ends nothing."""

from __future__ import annotations

from typing import Any

import pytest

from adapter import load_config
from adapter.keys.keyring import KeyRing
from adapter.web._frontchannel import Budget
from adapter.web._steps import Respond
from adapter.web.core import WebCore
from tests.unit.test_core import (
    ISSUER,
    RAW_CONFIG,
    browser,
    decide,
    identity,
    location,
    no_io,
    server,
    set_cookies,
    sign_in,
    status,
    token_set,
)

PATH = "/oidc/frontchannel-logout"
ON = load_config({**RAW_CONFIG, "frontchannel-logout": True})


def framed(query: str, cookies: dict[str, str] | None = None, **headers: str) -> Any:
    """The server's iframe loads the route: no cookies unless given (third-party cookies)."""
    return browser("GET", PATH, query, cookies, headers={"sec-fetch-dest": "iframe", **headers})


def test_the_route_is_off_unless_configured() -> None:
    core = WebCore(load_config(RAW_CONFIG), KeyRing(()))
    assert PATH not in core.own_paths
    cookies = sign_in(core, ["user"])
    # The app's own path then (here: a signed-in request, passed to the app).
    decide(core, framed(f"iss={ISSUER}&sid=idp-session", cookies), server())
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))


def test_the_servers_iss_and_sid_end_the_sessions_without_cookies() -> None:
    core = WebCore(ON, KeyRing(()))
    # The adapter's own path: never answered from a remembered decision or the anonymous
    # shortcut (the entry hands it to the full path).
    assert PATH in core.own_paths
    assert not core.may_reuse(PATH, "GET")
    cookies = sign_in(core, ["user"])
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))
    answer = decide(core, framed(f"iss={ISSUER}&sid=idp-session"), no_io)
    assert isinstance(answer, Respond)
    assert answer.status == 200
    headers = dict(answer.headers)
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors https://sso.example.com" in headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in headers
    assert headers["Content-Type"].startswith("text/html")
    assert b"Signed out" in answer.body
    assert not [v for k, v in answer.headers if k == "Set-Cookie"]
    after = decide(core, browser("GET", "/page", cookies=cookies), server())
    assert status(after) == 302  # signed out: to the login


@pytest.mark.parametrize(
    "query",
    [
        "iss=https://evil.example.com/realms/core&sid=idp-session",
        f"iss={ISSUER}/&sid=idp-session",
        "sid=idp-session",
        f"iss={ISSUER}",
        f"iss={ISSUER}&sid=",
        f"iss={ISSUER}&sid=a%20b",
        f"iss={ISSUER}&sid={'x' * 300}",
    ],
)
def test_a_wrong_or_missing_iss_or_sid_is_400_and_ends_nothing(query: str) -> None:
    core = WebCore(ON, KeyRing(()))
    cookies = sign_in(core, ["user"])
    answer = decide(core, framed(query, cookies), no_io)
    assert status(answer) == 400
    assert isinstance(answer, Respond)
    assert dict(answer.headers)["Cache-Control"] == "no-store"
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))


def test_another_sid_ends_other_sessions_only() -> None:
    core = WebCore(ON, KeyRing(()))
    cookies = sign_in(core, ["user"])
    assert status(decide(core, framed(f"iss={ISSUER}&sid=someone-else"), no_io)) == 200
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))


def test_the_session_cookie_decides_nothing() -> None:
    """A cookie that comes along (first-party frames) neither ends its own session when the
    sid is another's, nor is needed when it is its own."""
    core = WebCore(ON, KeyRing(()))
    cookies = sign_in(core, ["user"])
    assert status(decide(core, framed("iss=https://other.example&sid=x", cookies), no_io)) == 400
    assert status(decide(core, framed(f"iss={ISSUER}&sid=other", cookies), no_io)) == 200
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))


def test_only_get_is_answered() -> None:
    core = WebCore(ON, KeyRing(()))
    answer = decide(core, browser("POST", PATH, f"iss={ISSUER}&sid=s"), no_io)
    assert status(answer) == 405


def test_a_head_request_ends_nothing() -> None:
    """A link checker or a preview asks HEAD: it is answered, and the sessions stay."""
    core = WebCore(ON, KeyRing(()))
    cookies = sign_in(core, ["user"])
    answer = decide(core, browser("HEAD", PATH, f"iss={ISSUER}&sid=idp-session"), no_io)
    assert status(answer) == 200
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))


def test_the_route_follows_frontchannel_logout_path() -> None:
    config = load_config(
        {**RAW_CONFIG, "frontchannel-logout": True, "frontchannel-logout-path": "/fc"}
    )
    core = WebCore(config, KeyRing(()))
    cookies = sign_in(core, ["user"])
    answer = decide(core, browser("GET", "/fc", f"iss={ISSUER}&sid=idp-session"), no_io)
    assert status(answer) == 200
    assert status(decide(core, browser("GET", "/page", cookies=cookies), server())) == 302


def test_a_flood_of_made_up_sids_is_refused_before_it_fills_the_records() -> None:
    budget = Budget(records=100, lifetime=100.0, burst=10)
    assert budget.burst == 10
    assert budget.rate == pytest.approx(0.25)
    assert all(budget.take(0.0) for _ in range(10))
    assert not budget.take(0.0)
    assert budget.take(4.0)  # a quarter a second
    assert not budget.take(4.0)
    # Over a session's lifetime, a quarter of the table at most (plus the burst).
    taken = sum(budget.take(4.0 + i * 0.5) for i in range(200))
    assert taken <= 100 / 4 + 10


def test_a_new_sign_in_with_the_logged_out_sid_ends_on_a_page_not_in_a_loop() -> None:
    """Keycloak ends its session before it frames the logout, so the next sign-in has a new
    sid; a front-channel logout that came without (anyone may send one) would otherwise send
    the user round the server and back for as long as the record lasts."""
    core = WebCore(ON, KeyRing(()))
    sign_in(core, ["user"])
    assert status(decide(core, framed(f"iss={ISSUER}&sid=idp-session"), no_io)) == 200
    started = decide(core, browser("GET", "/oidc/login"), server())
    query = location(started)[1]
    back = browser("GET", "/oidc/callback", f"code=c&state={query['state']}", set_cookies(started))
    refused = decide(core, back, server(token_set(query["nonce"], ["user"])))
    assert status(refused) == 401
    assert isinstance(refused, Respond)
    assert b"sign out there first" in refused.body
    assert not [k for k, v in set_cookies(refused).items() if v and "session" in k]


def test_a_flood_of_front_channel_logouts_never_pushes_out_a_signed_one() -> None:
    """Front-channel records (unauthenticated, from this process or, through Redis, from any
    other) live in their own table: past its bound they push out only their own kind, and the
    fail-closed watermark never moves, so no flood signs everyone out."""
    import time as clock

    from adapter.web.session import ServerLogouts

    logouts = ServerLogouts(max_entries=40)
    now = clock.time()
    logouts.apply("real-sid", None, now, now + 3600)  # a signed (back-channel) logout
    for index in range(1000):  # made-up sids, as many processes would apply them
        logouts.apply(f"forged-{index}", None, now, now + 3600, front=True)
    assert logouts.watermark == 0.0
    assert logouts.refuses({"sid": "real-sid"}, now - 10)
    assert not logouts.refuses({"sid": "someone-else"}, now - 10), "others stay signed in"
    assert logouts.refuses({"sid": "forged-999"}, now - 10), "the latest front-channel ones hold"
    assert not logouts.refuses({"sid": "forged-0"}, now - 10), "the oldest dropped: best effort"
