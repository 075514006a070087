"""Step-up through the web core and the idioms' guard: ``acr`` and ``max-age`` in ``[[access]]``
rules (and ``require``), the login that asks for them, the callback that checks the new ID
token (never a loop), and RFC 9470's challenge for bearer and DPoP requests."""

from __future__ import annotations

import json
import time
import tomllib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from adapter import load_config
from adapter.config.access_rules import Requirement
from adapter.errors import ConfigError
from adapter.keys.keyring import KeyRing
from adapter.protocol.tokens import TokenSet
from adapter.web import _guard
from adapter.web._step_up import StepUp, asked, challenge_value, step_up_needed
from adapter.web._steps import Identity, Respond, WebRequest
from adapter.web.core import WebCore
from tests.docs_blocks import one_run_by
from tests.unit.test_core import (
    RAW_CONFIG,
    access_token,
    api,
    browser,
    decide,
    identity,
    location,
    server,
    set_cookies,
    signed,
    status,
)

RULES = [
    {"path": "/gold", "acr": ["gold"]},
    {"path": "/recent", "max-age": 300},
    {"path": "/both", "acr": ["gold", "platinum"], "max-age": 600, "roles": ["user"]},
]
CONFIG = load_config({**RAW_CONFIG, "access": RULES})


def tokens_for(nonce: str, **id_claims: Any) -> TokenSet:
    return TokenSet(
        access_token=access_token(["user"]),
        id_token=signed({"sid": "idp-session", "nonce": nonce, **id_claims}),
        refresh_token="refresh",
        expires_at=time.time() + 300,
    )


def log_in(core: WebCore, query: str = "", **id_claims: Any) -> tuple[Respond, dict[str, str]]:
    """A login (with ``query`` on the login route) answered with an ID token holding
    ``id_claims``: the callback's answer, and the authorization request's parameters."""
    started = decide(core, browser("GET", "/oidc/login", query), server())
    url, params = location(started)
    assert url == "https://sso.example.com/realms/core/auth"
    back = browser("GET", "/oidc/callback", f"code=c&state={params['state']}", set_cookies(started))
    done = decide(core, back, server(tokens_for(params["nonce"], **id_claims)))
    assert isinstance(done, Respond)
    return done, params


def session_of(answer: Respond) -> dict[str, str]:
    return {k: v for k, v in set_cookies(answer).items() if v and "session" in k}


# --- configuration ----------------------------------------------------------------------------


def test_rules_read_acr_and_max_age() -> None:
    gold, recent, both = CONFIG.web.access_rules
    assert gold.requirement == Requirement.of(acr=["gold"])
    assert recent.requirement.max_age == 300
    assert recent.requirement.acr == ()
    assert both.requirement.acr == ("gold", "platinum")  # in order: the login asks for them so
    assert both.requirement.steps_up
    assert not Requirement.of(roles=["x"]).steps_up


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"path": "/x", "max-age": 5}, "max-age: give at least 30 seconds"),
        ({"path": "/x", "max-age": -1}, "must be at least 0"),
        ({"path": "/x", "max-age": "soon"}, "whole number"),
        ({"path": "/x", "acr": ['gold"']}, "is not a token"),
        ({"path": "/x", "acr": ["gold level"]}, "is not a token"),
    ],
)
def test_bad_step_up_rules_are_refused_at_load(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({**RAW_CONFIG, "access": [rule]})


def test_requirement_of_refuses_what_cannot_go_in_a_header() -> None:
    with pytest.raises(ValueError, match="not a token"):
        Requirement.of(acr=["a,b"])
    with pytest.raises(ValueError, match="seconds"):
        Requirement.of(max_age=-3)
    with pytest.raises(ValueError, match="at least 30 seconds"):
        Requirement.of(max_age=0)  # as the [[access]] rules: never a sign-in every request
    with pytest.raises(ValueError, match="at most 8 acr values"):
        Requirement.of(acr=[f"level{n}" for n in range(9)])  # a login passes on 8
    assert Requirement.of(acr="gold").acr == ("gold",)  # one string is one value


# --- a browser's session ------------------------------------------------------------------------


def test_a_session_below_the_acr_is_sent_to_sign_in_again_with_acr_values() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    done, params = log_in(core, acr="silver", auth_time=int(time.time()))
    assert "acr_values" not in params
    assert "max_age" not in params
    assert "prompt" not in params
    cookies = session_of(done)
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), server()))
    answer = decide(core, browser("GET", "/gold", "x=1", cookies=cookies), server())
    url, query = location(answer)
    assert url == "/oidc/login"
    assert query == {"next": "/gold?x=1", "acr_values": "gold"}

    # The login passes it on; a server that answers with silver gets no session, but a 403.
    refused, params = log_in(core, "next=/gold&acr_values=gold", acr="silver")
    assert params["acr_values"] == "gold"
    assert "prompt" not in params
    assert refused.status == 403
    assert b"did not authenticate you strongly enough" in refused.body
    assert not session_of(refused)

    stepped, _ = log_in(core, "next=/gold&acr_values=gold", acr="gold")
    assert location(stepped)[0] == "/gold"
    assert identity(decide(core, browser("GET", "/gold", cookies=session_of(stepped)), server()))


def test_an_old_sign_in_is_sent_back_with_max_age_and_the_new_auth_time_is_checked() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    done, _ = log_in(core, auth_time=int(time.time()) - 3600)
    answer = decide(core, browser("GET", "/recent", cookies=session_of(done)), server())
    assert location(answer) == ("/oidc/login", {"next": "/recent", "max_age": "300"})

    no_time, params = log_in(core, "next=/recent&max_age=300")
    assert params["max_age"] == "300"
    assert no_time.status == 403  # max_age asked, no auth_time (Core 3.1.3.7)
    stale, _ = log_in(core, "next=/recent&max_age=300", auth_time=int(time.time()) - 3600)
    assert stale.status == 403  # a server that ignored max_age: no loop, a page
    fresh, _ = log_in(core, "next=/recent&max_age=300", auth_time=int(time.time()))
    cookies = session_of(fresh)
    assert identity(decide(core, browser("GET", "/recent", cookies=cookies), server()))


def test_a_script_of_a_session_gets_the_401_challenge() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    done, _ = log_in(core, acr="silver")
    request = browser(
        "GET", "/gold", cookies=session_of(done), headers={"accept": "application/json"}
    )
    answer = decide(core, request, server())
    assert status(answer) == 401
    assert isinstance(answer, Respond)
    assert json.loads(answer.body)["error"] == "insufficient_user_authentication"


def test_the_login_leaves_out_what_could_not_come_from_the_app() -> None:
    assert asked({"acr_values": 'gold x"y  silver', "max_age": "12a"}) == StepUp(
        ("gold", "silver"), None
    )
    assert asked({"max_age": "99999999999"}) is None
    assert asked({"next": "/"}) is None


# --- bearer tokens --------------------------------------------------------------------------------


def test_a_bearer_token_below_the_rule_gets_rfc_9470s_challenge() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    weak = access_token(["user"], acr="silver", auth_time=int(time.time()) - 3600)
    answer = decide(core, api(weak, "/both"), server())
    assert status(answer) == 401
    assert isinstance(answer, Respond)
    challenge = dict(answer.headers)["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication"')
    assert 'acr_values="gold platinum"' in challenge
    assert "max_age=600" in challenge
    assert "error_description=" in challenge
    strong = access_token(["user"], acr="platinum", auth_time=int(time.time()))
    assert identity(decide(core, api(strong, "/both"), server()))
    # Roles first: a stronger sign-in would not give a missing role.
    no_role = access_token(["guest"], acr="silver")
    assert status(decide(core, api(no_role, "/both"), server())) == 403


def test_a_bearer_token_without_auth_time_is_too_old_for_max_age() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    answer = decide(core, api(access_token(["user"]), "/recent"), server())
    assert status(answer) == 401
    assert isinstance(answer, Respond)
    assert "max_age=300" in dict(answer.headers)["WWW-Authenticate"]


def test_a_dpop_request_is_challenged_in_the_dpop_scheme() -> None:
    request = WebRequest("GET", "/gold", "", {"authorization": "DPoP abc"}, {})
    value = challenge_value(request, StepUp(("gold",), 60))
    assert value.startswith('DPoP error="insufficient_user_authentication"')
    assert 'algs="' in value
    assert 'acr_values="gold"' in value
    assert value.endswith("max_age=60")


def test_the_leeway_and_the_claims() -> None:
    now = int(time.time())
    recent = Requirement.of(max_age=100)
    assert step_up_needed(recent, {"auth_time": now - 120}, leeway=30) is None
    assert step_up_needed(recent, {"auth_time": now - 140}, leeway=30) == StepUp((), 100)
    assert step_up_needed(recent, {"auth_time": True}, leeway=30) is not None
    assert step_up_needed(Requirement.of(acr=["1"]), {"acr": 1}, leeway=0) is not None
    assert step_up_needed(Requirement.of(roles=["x"]), {}, leeway=0) is None


# --- the idioms' guard ------------------------------------------------------------------------


def who(**claims: Any) -> Identity:
    return Identity(claims, "alice", frozenset({"user"}), frozenset(), frozenset())


def test_the_idioms_answer_as_the_rules_do() -> None:
    gold = Requirement.of(roles=["user"], acr=["gold"])
    page = _guard.web_request("GET", [("accept", "text/html")], "/app", "/gold", "a=b")
    answer = _guard.answer(who(acr="silver"), gold, page, realm="app", logout_path="/o")
    assert isinstance(answer, Respond)
    assert answer.status == 302
    target = urlsplit(dict(answer.headers)["Location"])
    assert target.path == "/app/oidc/login"
    assert parse_qs(target.query) == {"next": ["/gold?a=b"], "acr_values": ["gold"]}
    bearer = _guard.web_request("GET", [("authorization", "Bearer t")], "", "/gold")
    refused = _guard.answer(who(acr="silver"), gold, bearer, realm="app", logout_path="/o")
    assert refused is not None
    assert refused.status == 401
    assert _guard.answer(who(acr="gold"), gold, bearer, realm="app", logout_path="/o") is None


def test_the_step_up_example_loads(request: pytest.FixtureRequest) -> None:
    block = one_run_by(request.node.nodeid)
    document = tomllib.loads(block.text)
    config = load_config({**RAW_CONFIG, **document})
    payments, security = config.web.access_rules
    assert payments.requirement == Requirement.of(acr=["gold"])
    assert security.requirement == Requirement.of(roles=["user"], max_age=300)
