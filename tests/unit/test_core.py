"""The web core driven by hand: no ASGI, no WSGI, no sockets (as h11's tests feed bytes).

:meth:`WebCore.handle` yields the I/O it needs; here every step is answered by a function of the
step (the server's metadata, its keys, a flow's result), so each test reads as the conversation
between a browser, the core and the identity server: login, callback, a session, its refresh,
logout, and bearer tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from adapter import load_config
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.keys.keyring import KeyRing
from adapter.protocol.provider import ProviderMetadata
from adapter.protocol.tokens import TokenSet
from adapter.web._steps import (
    Identity,
    NeedFlow,
    NeedKeys,
    NeedMetadata,
    NeedRefresh,
    Outcome,
    Proceed,
    Respond,
    Step,
    WebRequest,
    drive,
)
from adapter.web.core import WebCore

ISSUER = "https://sso.example.com/realms/core"
APP = "https://app.example.com"
SESSION, LOGIN, LOGOUT = "__Host-oidc_session", "__Host-oidc_login", "__Host-oidc_logout"
SERVER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
METADATA = ProviderMetadata(
    issuer=ISSUER,
    token_endpoint=ISSUER + "/token",
    authorization_endpoint=ISSUER + "/auth",
    jwks_uri=ISSUER + "/certs",
    end_session_endpoint=ISSUER + "/logout",
)
RAW_CONFIG: dict[str, Any] = {
    "issuer": ISSUER,
    "client-id": "app",
    "public-client": True,
    "session-secret": "core-test-session-secret-0123456789abcdef",
    "access": [{"path": "/admin", "roles": ["admin"]}],
}
CONFIG = load_config(RAW_CONFIG)
Answers = Callable[[Step], Any]


def decide(core: WebCore, request: WebRequest, answers: Answers) -> Outcome:
    """What the core decides for ``request``, each step it yields answered by ``answers``."""
    return drive(core.handle(request), answers)


def server(tokens: TokenSet | None = None, sent: list[dict[str, Any]] | None = None) -> Answers:
    """The identity server: its metadata and keys, and ``tokens`` for a token request (whose
    form is kept in ``sent``)."""

    def answer(step: Step) -> Any:
        if isinstance(step, NeedMetadata):
            return METADATA
        if isinstance(step, NeedKeys):
            return [SERVER_KEY.public_key()] if step.kid == "s1" else []
        if isinstance(step, NeedFlow | NeedRefresh) and tokens is not None:
            request = next(step.flow).request  # what the flow would send
            assert str(request.url) == METADATA.token_endpoint
            if sent is not None:
                sent.append(parse_qs(request.content.decode()))
            return tokens
        raise AssertionError(f"the core should not need {step!r} here")

    return answer


def no_io(step: Step) -> Any:
    raise AssertionError(f"the core should decide without I/O, but asked for {step!r}")


def signed(claims: dict[str, Any], typ: str | None = None) -> str:
    header = {"alg": "RS256", "kid": "s1", **({"typ": typ} if typ else {})}
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "app", "iat": now, "exp": now + 300, **claims}
    return sign_compact(encode_header(header), body, make_signer("RS256", SERVER_KEY))


def access_token(roles: list[str], **claims: Any) -> str:
    grant = {"client_id": "app", "scope": "openid", "realm_access": {"roles": roles}}
    return signed({**grant, **claims}, typ="at+jwt")


def token_set(nonce: str | None, roles: list[str], expires_in: float = 300) -> TokenSet:
    id_claims = {"sid": "idp-session", **({"nonce": nonce} if nonce else {})}
    return TokenSet(
        access_token=access_token(roles),
        id_token=signed(id_claims),
        refresh_token=f"refresh-{'-'.join(roles)}",
        expires_at=time.time() + expires_in,
    )


def browser(
    method: str, path: str, query: str = "", cookies: dict[str, str] | None = None, **extra: Any
) -> WebRequest:
    headers = {"host": "app.example.com", "accept": "text/html", **extra.pop("headers", {})}
    return WebRequest(
        method, path, query, headers, cookies or {}, scheme="https", host="app.example.com", **extra
    )


def set_cookies(outcome: Outcome) -> dict[str, str]:
    """The cookies an answer sets, by name ("" for those it expires)."""
    if isinstance(outcome, Proceed):
        values = outcome.set_cookies
    else:
        values = [v for k, v in outcome.headers if k == "Set-Cookie"]
    assert all("; Secure" in v and "; HttpOnly" in v for v in values)
    return {v.split("=", 1)[0]: v.split("=", 1)[1].split(";", 1)[0] for v in values}


def status(outcome: Outcome) -> int:
    assert isinstance(outcome, Respond), outcome
    return outcome.status


def identity(outcome: Outcome) -> Identity:
    assert isinstance(outcome, Proceed), outcome
    assert outcome.identity is not None
    return outcome.identity


def location(outcome: Outcome) -> tuple[str, dict[str, str]]:
    """Where a redirect sends the browser: the URL without its query, and the query."""
    assert status(outcome) == 302
    assert isinstance(outcome, Respond)
    url = urlsplit(dict(outcome.headers)["Location"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    return url._replace(query="").geturl(), query


def sign_in(core: WebCore, roles: list[str], expires_in: float = 300) -> dict[str, str]:
    """Log in through the core: the session cookies the browser then holds."""
    started = decide(core, browser("GET", "/oidc/login"), server())
    query = location(started)[1]
    back = browser("GET", "/oidc/callback", f"code=c1&state={query['state']}", set_cookies(started))
    done = decide(core, back, server(token_set(query["nonce"], roles, expires_in)))
    return {k: v for k, v in set_cookies(done).items() if v}


# --- the browser's way ------------------------------------------------------------------------


def test_login_redirects_with_state_nonce_and_pkce_then_the_callback_starts_a_session() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    started = decide(core, browser("GET", "/oidc/login", "next=/page"), server())
    url, query = location(started)
    assert url == METADATA.authorization_endpoint
    assert (query["client_id"], query["response_type"]) == ("app", "code")
    assert query["redirect_uri"] == APP + "/oidc/callback"
    assert query["code_challenge_method"] == "S256"
    assert min(len(query["state"]), len(query["nonce"])) >= 20
    login_cookie = set_cookies(started)
    assert list(login_cookie) == [LOGIN]

    sent: list[dict[str, Any]] = []
    tokens = token_set(query["nonce"], ["user"])
    back = browser("GET", "/oidc/callback", f"code=c1&state={query['state']}", login_cookie)
    done = decide(core, back, server(tokens, sent))

    [form] = sent
    assert (form["grant_type"], form["code"]) == (["authorization_code"], ["c1"])
    verifier = form["code_verifier"][0].encode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
    assert challenge.decode() == query["code_challenge"]
    assert location(done) == ("/page", {})
    cookies = set_cookies(done)
    assert cookies[SESSION]
    assert cookies[LOGIN] == ""  # the login is used once: coming back again goes nowhere
    again = browser("GET", "/oidc/callback", back.query, {SESSION: cookies[SESSION]})
    assert status(decide(core, again, no_io)) == 400


def test_a_request_with_the_session_proceeds_with_its_identity() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    cookies = sign_in(core, ["user"])
    outcome = decide(core, browser("GET", "/page", cookies=cookies), no_io)
    assert identity(outcome).identity == "alice"
    assert identity(outcome).roles == {"user"}  # from the access token
    assert set_cookies(outcome) == {}
    assert status(decide(core, browser("GET", "/admin", cookies=cookies), no_io)) == 403
    anonymous = decide(core, browser("GET", "/page"), no_io)
    assert location(anonymous) == ("/oidc/login", {"next": "/page"})


def test_an_expired_session_is_refreshed_and_carries_the_new_tokens() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    cookies = sign_in(core, ["user"], expires_in=-10)
    sent: list[dict[str, Any]] = []
    request = browser("GET", "/admin", cookies=cookies)
    refreshed = decide(core, request, server(token_set(None, ["admin"]), sent))
    [form] = sent
    assert (form["grant_type"], form["refresh_token"]) == (["refresh_token"], ["refresh-user"])
    assert identity(refreshed).roles == {"admin"}  # the refresh brought the new role
    renewed = set_cookies(refreshed)
    assert renewed[SESSION] not in ("", cookies[SESSION])
    later = decide(core, browser("GET", "/admin", cookies=renewed), no_io)
    assert identity(later).roles == {"admin"}


def test_logout_needs_the_csrf_token_clears_the_cookies_and_logs_out_at_the_server() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    cookies = sign_in(core, ["user"])
    csrf = identity(decide(core, browser("GET", "/page", cookies=cookies), no_io)).csrf_token
    assert csrf
    forged = decide(core, browser("POST", "/oidc/logout", cookies=cookies, form={}), server())
    assert status(forged) == 400

    form = {"csrf": csrf}
    done = decide(core, browser("POST", "/oidc/logout", cookies=cookies, form=form), server())
    url, query = location(done)
    assert url == METADATA.end_session_endpoint
    assert query["post_logout_redirect_uri"] == APP + "/oidc/logout"
    assert (query["client_id"], query["id_token_hint"].count(".")) == ("app", 2)
    cleared = set_cookies(done)
    assert cleared[SESSION] == ""
    assert cleared[LOGOUT]  # binds the server's return (its state) to this browser

    after = decide(core, browser("GET", "/page", cookies=cookies), no_io)
    assert location(after)[0] == "/oidc/login", "the old cookie no longer opens the session"
    returned = browser("GET", "/oidc/logout", f"state={query['state']}", {LOGOUT: cleared[LOGOUT]})
    assert location(decide(core, returned, no_io)) == ("/", {})


# --- bearer tokens ----------------------------------------------------------------------------


def api(token: str, path: str = "/api") -> WebRequest:
    return browser("GET", path, headers={"authorization": f"Bearer {token}", "accept": "*/*"})


def test_a_valid_bearer_token_proceeds_with_its_identity() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    token = access_token(["user"])
    outcome = decide(core, api(token), server())
    assert (identity(outcome).identity, identity(outcome).roles) == ("alice", frozenset({"user"}))
    assert identity(decide(core, api(token), no_io)) == identity(outcome)  # validated once


def test_a_bearer_token_for_another_audience_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    core = WebCore(CONFIG, KeyRing(()))
    with caplog.at_level(logging.WARNING, logger="adapter"):
        outcome = decide(core, api(access_token(["user"], aud="other-api")), server())
    assert status(outcome) == 401
    assert isinstance(outcome, Respond)
    assert 'error="invalid_token"' in dict(outcome.headers)["WWW-Authenticate"]
    assert "its audience ['other-api'] does not include ['app']" in caplog.text


def test_a_bearer_token_without_the_role_an_access_rule_asks_for_is_forbidden() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    assert status(decide(core, api(access_token(["user"]), "/admin"), server())) == 403
    allowed = decide(core, api(access_token(["admin"]), "/admin"), server())
    assert identity(allowed).roles == {"admin"}


# --- the newcomer's path (issue 21) -----------------------------------------------------------


def plain_http(method: str, path: str, query: str = "", **extra: Any) -> WebRequest:
    """A browser on plain http at a host that is not loopback (a LAN address)."""
    headers = {"host": "192.0.2.10:8000", "accept": "text/html"}
    return WebRequest(method, path, query, headers, {}, scheme="http", host="192.0.2.10:8000")


def test_a_callback_without_its_login_cookie_over_plain_http_names_the_cause_once_in_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapter.web import _login

    monkeypatch.setattr(_login, "_said_dropped", [False])
    core = WebCore(CONFIG, KeyRing(()))
    started = decide(core, plain_http("GET", "/oidc/login"), server())
    assert "; Secure" in dict(started.headers)["Set-Cookie"]  # type: ignore[union-attr]
    state = location(started)[1]["state"]
    with caplog.at_level(logging.WARNING, logger="adapter"):
        # The browser dropped the Secure login cookie: the callback comes back without it.
        for _ in range(3):
            answer = decide(
                core, plain_http("GET", "/oidc/callback", f"code=c&state={state}"), no_io
            )
            assert status(answer) == 400
            assert isinstance(answer, Respond)
            page = answer.body.decode()
            assert "This sign-in has expired" in page
            assert "login cookie did not come back" in page
            assert "ssl-required = &quot;none&quot;" in page
    said = [r.message for r in caplog.records if "login cookie did not come back" in r.message]
    assert len(said) == 1, "once per process, not once per attempt"
    assert 'ssl-required = "none"' in said[0]
    # Over https, or with the cookie there, the answer stays the plain "expired".
    expired = decide(core, browser("GET", "/oidc/callback", "code=c&state=x"), no_io)
    assert isinstance(expired, Respond)
    assert b"login cookie did not come back" not in expired.body


def test_start_up_warns_when_redirect_uri_gives_secure_cookies_over_plain_http(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from adapter import OIDCWSGIMiddleware

    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    base = {"issuer": ISSUER, "client-id": "app", "public-client": True}
    lan = {**base, "redirect-uri": "http://192.0.2.10:8000/oidc/callback"}
    with caplog.at_level(logging.WARNING, logger="adapter"):
        OIDCWSGIMiddleware(app, config=load_config(lan))
    [warning] = [r.message for r in caplog.records if "redirect-uri is plain http" in r.message]
    assert "192.0.2.10" in warning
    assert 'ssl-required = "none"' in warning
    caplog.clear()
    for fine in (
        {**base, "redirect-uri": "http://127.0.0.1:8000/oidc/callback"},
        {**base, "redirect-uri": "https://app.example.com/oidc/callback"},
        {**lan, "ssl-required": "none"},
    ):
        with caplog.at_level(logging.WARNING, logger="adapter"):
            OIDCWSGIMiddleware(app, config=load_config(fine))
    assert "redirect-uri is plain http" not in caplog.text


def test_a_get_of_the_logout_route_is_a_page_for_a_browser_and_json_for_a_json_client() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    page = decide(core, browser("GET", "/oidc/logout"), no_io)
    assert isinstance(page, Respond)
    headers = dict(page.headers)
    assert (page.status, headers["Allow"]) == (405, "POST")
    assert headers["Content-Type"].startswith("text/html")
    assert b"<h1>Sign out with the button</h1>" in page.body
    api_client = browser("GET", "/oidc/logout", headers={"accept": "application/json"})
    answer = decide(core, api_client, no_io)
    assert isinstance(answer, Respond)
    assert dict(answer.headers)["Content-Type"] == "application/json"
    assert json.loads(answer.body)["error"] == "method_not_allowed"
    assert "error_description" in json.loads(answer.body)


def test_a_401_for_a_json_client_is_json_with_the_bearer_challenge() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    for request in (
        browser("GET", "/page", headers={"accept": "application/json"}),  # no credentials
        browser(  # a refused token
            "GET", "/api", headers={"authorization": "Bearer x.y.z", "accept": "application/json"}
        ),
    ):
        answer = decide(core, request, server())
        assert isinstance(answer, Respond)
        headers = dict(answer.headers)
        assert answer.status == 401
        assert headers["WWW-Authenticate"].startswith('Bearer realm="app"')
        assert headers["Content-Type"] == "application/json"
        body = json.loads(answer.body)
        assert set(body) == {"error", "error_description"}
    plain = decide(
        core, browser("GET", "/page", headers={"accept": "*/*", "sec-fetch-mode": "cors"}), no_io
    )
    assert isinstance(plain, Respond)
    assert dict(plain.headers)["Content-Type"].startswith("text/plain")  # unchanged for others
    forbidden = decide(core, api(access_token(["user"]), "/admin"), server())
    assert isinstance(forbidden, Respond)
    assert json.loads(forbidden.body)["error"] == "forbidden"


def test_a_session_store_that_is_down_is_a_page_for_a_browser() -> None:
    from adapter.errors import StoreError
    from adapter.web._steps import NeedStore

    core = WebCore(load_config({**RAW_CONFIG, "session-store": "memory"}), KeyRing(()))
    records: dict[str, Any] = {}

    def up(step: Step) -> Any:
        if isinstance(step, NeedStore):
            if step.op == "load":
                return records.get(step.sid)
            records[step.sid] = step.data
            return True
        return server(token_set(nonce[0], ["user"]))(step)

    nonce: list[str | None] = [None]
    started = decide(core, browser("GET", "/oidc/login"), server())
    query = location(started)[1]
    nonce[0] = query["nonce"]
    back = browser("GET", "/oidc/callback", f"code=c1&state={query['state']}", set_cookies(started))
    cookies = {k: v for k, v in set_cookies(decide(core, back, up)).items() if v}
    assert identity(decide(core, browser("GET", "/page", cookies=cookies), up))

    def down(step: Step) -> Any:
        if isinstance(step, NeedStore):
            raise StoreError("redis: connection refused")
        return server()(step)

    answer = decide(core, browser("GET", "/page", cookies=cookies), down)
    assert isinstance(answer, Respond)
    assert answer.status == 503
    assert dict(answer.headers)["Content-Type"].startswith("text/html")
    assert b"Sessions are unavailable" in answer.body
    as_json = browser("GET", "/page", cookies=cookies, headers={"accept": "application/json"})
    answer = decide(core, as_json, down)
    assert isinstance(answer, Respond)
    assert json.loads(answer.body)["error"] == "temporarily_unavailable"


def test_the_403_pages_sign_out_signs_in_again_back_to_the_page() -> None:
    core = WebCore(CONFIG, KeyRing(()))
    cookies = sign_in(core, ["user"])
    refused = decide(core, browser("GET", "/admin", "tab=2", cookies=cookies), no_io)
    assert isinstance(refused, Respond)
    assert refused.status == 403
    assert b'name="next" value="/admin?tab=2"' in refused.body
    csrf = identity(decide(core, browser("GET", "/page", cookies=cookies), no_io)).csrf_token
    form = {"csrf": csrf or "", "next": "/admin?tab=2"}
    done = decide(core, browser("POST", "/oidc/logout", cookies=cookies, form=form), server())
    url, query = location(done)
    assert url == METADATA.end_session_endpoint
    assert query["post_logout_redirect_uri"] == APP + "/oidc/logout"  # as registered
    pending = set_cookies(done)[LOGOUT]
    returned = browser("GET", "/oidc/logout", f"state={query['state']}", {LOGOUT: pending})
    assert location(decide(core, returned, no_io)) == ("/oidc/login", {"next": "/admin?tab=2"})
    # Without a server to log out at, straight to the new login; a foreign target stays home.
    local = WebCore(CONFIG, KeyRing(()))
    cookies = sign_in(local, ["user"])
    csrf = identity(decide(local, browser("GET", "/page", cookies=cookies), no_io)).csrf_token
    no_end = replace(METADATA, end_session_endpoint=None)
    form = {"csrf": csrf or "", "next": "//evil.example/"}
    done = decide(
        local,
        browser("POST", "/oidc/logout", cookies=cookies, form=form),
        lambda step: no_end if isinstance(step, NeedMetadata) else server()(step),
    )
    assert location(done) == ("/oidc/login", {"next": "/"})


def test_the_idioms_403_page_returns_to_its_page_when_the_idiom_knows_it() -> None:
    from adapter.web import _guard
    from adapter.web._access import Refusal, forbidden_response

    none: frozenset[str] = frozenset()
    alice = Identity({"sub": "alice"}, "alice", none, none, none, csrf_token="t")
    refused = Refusal("role", ("admin",))
    headers = [("Accept", "text/html")]
    known = _guard.web_request("GET", headers, "/app", "/admin", "tab=2")
    page = forbidden_response(known, alice, refused, "/oidc/logout").body
    assert b'action="/app/oidc/logout"' in page
    assert b'name="next" value="/admin?tab=2"' in page
    unknown = forbidden_response(_guard.web_request("GET", headers), alice, refused, "/oidc/logout")
    assert b'name="next"' not in unknown.body, "no page known: the logout ends as usual"
    from adapter.config.access_rules import Requirement

    requirement = Requirement(roles=frozenset({"admin"}))
    json_client = _guard.web_request("GET", [("Accept", "application/json")], "", "/admin")
    answer = _guard.answer(None, requirement, json_client, realm="app", logout_path="/oidc/logout")
    assert answer is not None
    assert dict(answer.headers)["WWW-Authenticate"] == 'Bearer realm="app"'
    assert json.loads(answer.body)["error"] == "unauthorized"
