"""Back-channel logout against the real identity server: a logout there ends the session here.

The examples run over real HTTP so that the server can POST its logout token to them. Forged
logout tokens (signed with the server's own key, which this test holds) with a bad signature,
a nonce, no events, a replayed jti, the wrong audience or an old iat are refused with 400 and
end no session.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from adapter.jose import encode_header, make_signer, sign_compact
from adapter.protocol.tokens import BACKCHANNEL_LOGOUT_EVENT
from adapter.web.session import SessionCodec
from examples.flask_app.app import create_app as create_flask_app
from examples.starlette_app.app import create_app as create_starlette_app
from tests.app_server import free_port, serve
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack, signing_key

SECRET = "backchannel-client-secret-" + "b" * 40
SESSION_SECRET = "backchannel-session-secret-" + "z" * 24
EVENTS = {BACKCHANNEL_LOGOUT_EVENT: {}}


@dataclass
class World:
    idp: IdentityServer
    config: Path
    key: rsa.RSAPrivateKey
    urls: dict[str, str]  # shell -> the app's URL


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("backchannel")
    key, jwk = signing_key()
    urls = {shell: f"http://127.0.0.1:{free_port()}" for shell in ("asgi", "wsgi")}
    clients = [
        {
            "client_id": f"web-{shell}",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [f"{url}/oidc/callback"],
            "post_logout_redirect_uris": [f"{url}/"],
            "backchannel_logout_uri": f"{url}/oidc/backchannel-logout",
            "backchannel_logout_session_required": True,
        }
        for shell, url in urls.items()
    ]
    with IdentityServer(clients, tmp_dir=directory, jwks={"keys": [jwk]}) as idp:
        yield World(idp, directory, key, urls)


def config_for(world: World, shell: str) -> Path:
    path = world.config / f"{shell}.toml"
    path.write_text(
        f'issuer = "{world.idp.issuer}"\nclient-id = "web-{shell}"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
    )
    path.chmod(0o600)
    return path


@pytest.fixture(params=["asgi", "wsgi"])
def app(request: pytest.FixtureRequest, world: World) -> Iterator[tuple[str, Browser]]:
    shell = str(request.param)
    config = config_for(world, shell)
    made = create_starlette_app(config) if shell == "asgi" else create_flask_app(config)
    url = world.urls[shell]
    port = int(url.rsplit(":", 1)[1])
    with serve(shell, made, port):
        browser = Browser(Stack(world.idp, config, {shell: httpx.HTTPTransport()}), shell, url)
        yield shell, browser
        browser.http.close()


def session_claims(world: World, browser: Browser, shell: str) -> dict[str, Any]:
    codec = SessionCodec([SESSION_SECRET.encode()], context=f"web-{shell}\0{world.idp.issuer}")
    document = codec.open(browser.session_cookies()["oidc_session"], "session")
    assert document is not None
    claims: dict[str, Any] = document["d"]["claims"]
    return claims


def test_a_logout_at_the_server_ends_the_session_here(
    world: World, app: tuple[str, Browser]
) -> None:
    shell, browser = app
    page = browser.log_in()
    assert page.status_code == 200
    claims = session_claims(world, browser, shell)
    assert claims.get("sid"), "the server names its session in the ID token"
    copied = browser.session_cookies()
    # The user logs out at the identity server itself (another tab, or an admin).
    end = browser.http.get(
        world.idp.metadata["end_session_endpoint"], params={"client_id": f"web-{shell}"}
    )
    form = end.text.split('action="', 1)[1].split('"', 1)[0]
    xsrf = end.text.split('name="xsrf" value="', 1)[1].split('"', 1)[0]
    done = browser.http.post(urljoin(str(end.url), form), data={"xsrf": xsrf, "logout": "yes"})
    assert done.status_code in (200, 302, 303)
    backchannel = f"{world.urls[shell]}/oidc/backchannel-logout"
    assert world.idp.wait_for_log(f'"url":"{backchannel}","status":200', timeout=10)
    after = browser.get("/profile", cookies=copied, headers={"Accept": "application/json"})
    assert after.status_code == 401, "the session ended here too"


def logout_token(
    world: World, shell: str, key: Any = None, typ: str = "logout+jwt", **claims: Any
) -> str:
    now = int(time.time())
    base = {
        "iss": world.idp.issuer,
        "aud": f"web-{shell}",
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(12),
        "events": EVENTS,
    }
    body = {k: v for k, v in {**base, **claims}.items() if v is not None}
    header = encode_header({"alg": "RS256", "kid": "server-1", "typ": typ})
    return sign_compact(header, body, make_signer("RS256", key or world.key))


def test_bad_logout_tokens_are_refused_and_end_nothing(
    world: World, app: tuple[str, Browser]
) -> None:
    shell, browser = app
    browser.log_in()
    sid = session_claims(world, browser, shell)["sid"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hour_ago = int(time.time()) - 3600
    bad = {
        "bad signature": logout_token(world, shell, key=other, sid=sid),
        "nonce": logout_token(world, shell, sid=sid, nonce="n"),
        "no events": logout_token(world, shell, sid=sid, events=None),
        "wrong aud": logout_token(world, shell, sid=sid, aud="another-client"),
        "old iat": logout_token(world, shell, sid=sid, iat=hour_ago),
        "no exp": logout_token(world, shell, sid=sid, exp=None),
        "an access token's typ": logout_token(world, shell, sid=sid, typ="at+jwt"),
        "no sid nor sub": logout_token(world, shell),
    }
    for name, token in bad.items():
        answer = browser.post("/oidc/backchannel-logout", data={"logout_token": token})
        assert answer.status_code == 400, name
        assert answer.json()["error"] == "invalid_request"
        assert answer.headers["cache-control"] == "no-store"
        assert browser.get("/profile").status_code == 200, f"{name}: no session ended"
    assert browser.get("/oidc/backchannel-logout").status_code == 405
    # A good one for another server session ends nothing here (Keycloak before 2024 typed
    # them plain "JWT"); replayed, it is refused.
    elsewhere = logout_token(world, shell, sid="another-server-session", typ="JWT")
    first = browser.post("/oidc/backchannel-logout", data={"logout_token": elsewhere})
    assert first.status_code == 200
    assert "location" not in first.headers, "never a redirect"
    replay = browser.post("/oidc/backchannel-logout", data={"logout_token": elsewhere})
    assert replay.status_code == 400
    assert browser.get("/profile").status_code == 200


def test_a_logout_of_the_user_ends_her_earlier_sessions(
    world: World, app: tuple[str, Browser]
) -> None:
    shell, browser = app
    browser.log_in(login="carol")
    assert browser.get("/profile").status_code == 200
    token = logout_token(world, shell, sub="carol")
    assert browser.post("/oidc/backchannel-logout", data={"logout_token": token}).status_code == 200
    assert browser.get("/profile", headers={"Accept": "application/json"}).status_code == 401
