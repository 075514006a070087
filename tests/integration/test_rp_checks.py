"""What the OpenID Foundation's RP test modules check, against the real identity server.

- A logout token is held to the client's ID token algorithm (Back-Channel Logout §2.6: "as for
  ID tokens"), not to whatever discovery lists: one signed ES256 with the server's own EC key,
  where ID tokens are RS256, is refused and the session lives. ID tokens themselves are held to
  ``id-token-signing-alg`` (login, and the library client).
- A callback without ``iss`` from a server that says it sends one (RFC 9207 §2.4) is refused
  with 400, before any token request.
- RP-initiated logout sends a ``state`` bound to this browser; a return with a foreign or no
  ``state`` is not taken for this app's logout.

The server holds an RSA key (RS256, its ID tokens) and an EC key (ES256) that this module made,
so tokens signed with either are the server's own.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from adapter import ValidationError
from adapter.jose import encode_header, make_signer, sign_compact
from adapter.protocol.client import OIDCClient
from adapter.protocol.tokens import BACKCHANNEL_LOGOUT_EVENT
from adapter.web.session import SessionCodec
from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.idp_server import IdentityServer
from tests.web_client import APP, Browser, Stack, signing_key, web_client

SECRET = "rp-checks-client-secret-" + "r" * 40
SESSION_SECRET = "rp-checks-session-secret-" + "p" * 24
LOGOUT_RETURN = f"{APP}/oidc/logout"


@dataclass
class Setup:
    idp: IdentityServer
    directory: Path
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("rp-checks")
    rsa_key, rsa_jwk = signing_key("server-rsa")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = {**ECKey.import_key(ec_key).as_dict(private=True), "kid": "server-ec"}
    ec_jwk.update({"use": "sig", "alg": "ES256"})
    clients = [
        web_client(
            SECRET,
            "web",
            post_logout_redirect_uris=[LOGOUT_RETURN],
            # sid in the ID token (as Keycloak with "Backchannel logout session required")
            backchannel_logout_uri=f"{APP}/oidc/backchannel-logout",
            backchannel_logout_session_required=True,
        ),
        # A client whose ID tokens the server signs ES256 (Keycloak: "ID token signature
        # algorithm" set to ES256 on the client).
        web_client(SECRET, "web-es", id_token_signed_response_alg="ES256"),
        web_client(SECRET, "web-iss"),  # its token requests are counted
    ]
    with IdentityServer(clients, tmp_dir=directory, jwks={"keys": [rsa_jwk, ec_jwk]}) as idp:
        assert idp.metadata["authorization_response_iss_parameter_supported"] is True
        assert "ES256" in idp.metadata["id_token_signing_alg_values_supported"]
        yield Setup(idp, directory, rsa_key, ec_key)


def write_config(setup: Setup, client_id: str = "web", *extra: str) -> Path:
    path = setup.directory / f"adapter-{secrets.token_hex(4)}.toml"
    path.write_text(
        f'issuer = "{setup.idp.issuer}"\nclient-id = "{client_id}"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        + "".join(f"{line}\n" for line in extra)
        + f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def browser_for(setup: Setup, config: Path, shell: str) -> Iterator[Browser]:
    """A browser for the example app of ``shell`` with ``config``, in-process."""
    with contextlib.ExitStack() as stack:
        if shell == "asgi":
            client = stack.enter_context(TestClient(create_starlette_app(config), base_url=APP))
            transport: httpx.BaseTransport = client._transport
        else:
            transport = httpx.WSGITransport(app=create_flask_app(config))
        browser = Browser(Stack(setup.idp, config, {shell: transport}), shell)
        stack.callback(browser.http.close)
        yield browser


@pytest.fixture(params=["asgi", "wsgi"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def browser(setup: Setup, shell: str) -> Iterator[Browser]:
    with browser_for(setup, write_config(setup), shell) as made:
        yield made


def session_claims(setup: Setup, browser: Browser, client_id: str = "web") -> dict[str, Any]:
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"{client_id}\0{setup.idp.issuer}")
    document = codec.open(browser.session_cookies()["oidc_session"], "session")
    assert document is not None
    claims: dict[str, Any] = document["d"]["claims"]
    return claims


# --- logout tokens and ID tokens: the client's algorithm, not discovery's list ------------------


def logout_token(setup: Setup, alg: str, sid: str) -> str:
    now = int(time.time())
    claims = {
        "iss": setup.idp.issuer,
        "aud": "web",
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(12),
        "sid": sid,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    key: Any = setup.ec_key if alg == "ES256" else setup.rsa_key
    kid = "server-ec" if alg == "ES256" else "server-rsa"
    header = encode_header({"alg": alg, "kid": kid, "typ": "logout+jwt"})
    return sign_compact(header, claims, make_signer(alg, key))


def test_a_logout_token_in_another_algorithm_is_refused(setup: Setup, browser: Browser) -> None:
    browser.log_in()
    sid = session_claims(setup, browser)["sid"]
    es256 = logout_token(setup, "ES256", sid)
    refused = browser.post("/oidc/backchannel-logout", data={"logout_token": es256})
    assert refused.status_code == 400, "ES256 (the server's own EC key) where ID tokens are RS256"
    assert refused.json()["error"] == "invalid_request"
    assert browser.get("/profile").status_code == 200, "the session lives"
    rs256 = logout_token(setup, "RS256", sid)
    accepted = browser.post("/oidc/backchannel-logout", data={"logout_token": rs256})
    assert accepted.status_code == 200, "the same logout in the client's algorithm"
    assert browser.get("/profile", headers={"Accept": "application/json"}).status_code == 401


def test_a_login_with_an_id_token_in_another_algorithm_is_refused(
    setup: Setup, shell: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapter")
    with browser_for(setup, write_config(setup, "web-es"), shell) as browser:
        page = browser.log_in()
        assert page.status_code == 401, "the server signs ES256, id-token-signing-alg is RS256"
        assert browser.get("/profile").status_code == 302, "no session came of it"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("adapter")]
    refusals = [line for line in lines if line.startswith("login refused")]
    assert len(refusals) == 1, lines
    assert "ES256" in refusals[0]
    assert "id-token-signing-alg" in refusals[0]
    assert "RS256" in refusals[0]
    configured = write_config(setup, "web-es", 'id-token-signing-alg = "ES256"')
    with browser_for(setup, configured, shell) as browser:
        assert browser.log_in().status_code == 200, "configured as the client is: signed in"


def forged_id_token(setup: Setup, alg: str) -> str:
    now = int(time.time())
    claims = {
        "iss": setup.idp.issuer,
        "aud": "web",
        "sub": "mallory",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
    }
    key: Any = setup.ec_key if alg == "ES256" else setup.rsa_key
    kid = "server-ec" if alg == "ES256" else "server-rsa"
    return sign_compact(encode_header({"alg": alg, "kid": kid}), claims, make_signer(alg, key))


def test_the_library_client_holds_id_tokens_to_the_setting(setup: Setup) -> None:
    es256 = forged_id_token(setup, "ES256")
    with OIDCClient(write_config(setup)) as oidc:
        assert oidc.validate_id_token(forged_id_token(setup, "RS256"), "n-1")["sub"] == "mallory"
        with pytest.raises(ValidationError, match="'ES256' is not accepted"):
            oidc.validate_id_token(es256, nonce="n-1")
    with OIDCClient(write_config(setup, "web", 'id-token-signing-alg = "ES256"')) as oidc:
        assert oidc.validate_id_token(es256, nonce="n-1")["sub"] == "mallory"


# --- RFC 9207: a server that says it sends iss must send it -------------------------------------


def callback_url(browser: Browser) -> str:
    response = browser.walk(browser.get("/profile"), stop_at_callback=True)
    return urljoin(str(response.url), response.headers["location"])


def token_requests(logs: str) -> int:
    """The token requests of client web-iss the server logged (granted or refused)."""
    return len(re.findall(r'"event":"grant\.[a-z]+",[^\n]*"client_id":"web-iss"', logs))


def test_a_callback_without_iss_is_refused_before_any_token_request(
    setup: Setup, shell: str
) -> None:
    with browser_for(setup, write_config(setup, "web-iss"), shell) as browser:
        refused_without_iss(setup, browser)


def refused_without_iss(setup: Setup, browser: Browser) -> None:
    before = token_requests(setup.idp.settled_logs())
    url = callback_url(browser)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["iss"] == setup.idp.issuer
    del query["iss"]
    refused = browser.get(f"/oidc/callback?{urlencode(query)}")
    assert refused.status_code == 400
    assert browser.get("/profile").status_code == 302, "not signed in"
    # A callback with its iss then costs one token request: the refused one made none.
    assert browser.get(callback_url(browser)).status_code == 302
    # Both callbacks were answered, so the server has logged any token request they made.
    assert token_requests(setup.idp.settled_logs()) == before + 1


# --- RP-initiated logout: a state bound to this browser -----------------------------------------


def log_out(browser: Browser) -> tuple[str, dict[str, list[str]]]:
    """POST the logout; the server's end-session URL and its query."""
    out = browser.post("/oidc/logout", data={"csrf": browser.csrf()})
    assert out.status_code == 302
    location = out.headers["location"]
    return location, parse_qs(urlsplit(location).query)


def through_the_server(browser: Browser, location: str) -> str:
    """Confirm the logout on the server's page; the URL it sends the browser back to."""
    page = browser.http.get(location)
    form = page.text.split('action="', 1)[1].split('"', 1)[0]
    xsrf = page.text.split('name="xsrf" value="', 1)[1].split('"', 1)[0]
    done = browser.http.post(urljoin(str(page.url), form), data={"xsrf": xsrf, "logout": "yes"})
    for _ in range(5):
        assert done.is_redirect, done.text[:300]
        target = urljoin(str(done.url), done.headers["location"])
        if target.startswith(APP):
            return target
        done = browser.http.get(target)
    raise AssertionError("the server did not send the browser back")


def test_logout_sends_a_state_and_its_return_lands_on_the_post_logout_page(
    setup: Setup, browser: Browser
) -> None:
    browser.log_in()
    location, query = log_out(browser)
    assert location.startswith(setup.idp.metadata["end_session_endpoint"])
    assert query["post_logout_redirect_uri"] == [LOGOUT_RETURN]
    state = query["state"][0]
    assert len(state) >= 22, "random, at least 128 bits"
    back = through_the_server(browser, location)
    assert back == f"{LOGOUT_RETURN}?state={state}", "the server returns the state"
    landing = browser.get(back)
    assert landing.status_code == 302
    assert landing.headers["location"] == "/", "post-logout-redirect"
    assert any(
        h.startswith("oidc_logout=") and "Max-Age=0" in h
        for h in landing.headers.get_list("set-cookie")
    ), "the logout's state is used once"
    again = browser.get(back, headers={"Accept": "text/html"})
    assert again.status_code == 400, "used once"


def test_a_logout_return_with_a_foreign_state_is_not_this_apps_logout(
    setup: Setup, browser: Browser, shell: str
) -> None:
    with browser_for(setup, write_config(setup), shell) as other:
        other.log_in()
        _, theirs = log_out(other)
    browser.log_in()
    location, ours = log_out(browser)
    for foreign in ("forged-" + secrets.token_urlsafe(16), theirs["state"][0]):
        answer = browser.get(f"/oidc/logout?state={foreign}", headers={"Accept": "text/html"})
        assert answer.status_code == 400, foreign
        assert "location" not in answer.headers, "not sent on to the post-logout page"
        assert "not started in this browser" in answer.text
    assert browser.get("/oidc/logout").status_code == 405, "no state: not a logout return"
    # The browser's own return still counts (a forged one did not spend it).
    back = through_the_server(browser, location)
    assert parse_qs(urlsplit(back).query)["state"] == ours["state"]
    assert browser.get(back).headers.get("location") == "/"


def test_a_logout_return_without_a_logout_here_is_refused(browser: Browser) -> None:
    answer = browser.get("/oidc/logout?state=" + secrets.token_urlsafe(24))
    assert answer.status_code == 400
    assert "location" not in answer.headers
