"""Encrypted ID tokens from the real identity server (oidc-provider, ``encryption`` on).

Two apps (the Flask example behind the WSGI middleware) serve /k_jwks on real sockets; the
identity server fetches each client's encryption key from there and encrypts its ID tokens
to it:

- ``enc-rsa``: private_key_jwt (a signing key and an RSA-OAEP-256 encryption key in one JWKS),
  ID tokens RSA-OAEP-256 / A256GCM;
- ``enc-ec``: client_secret_basic with an EC encryption key only, ID tokens ECDH-ES+A256KW /
  A128CBC-HS256.

Each signs in without a browser (the server's login forms over HTTP); the session keeps the
signed ID token inside, which logout sends as ``id_token_hint`` and the server accepts. A third
client's encryption key rotates (next, active, retired, the server's key cache cleared with
``keys clear-server-cache`` through the test server's stand-in for Keycloak's admin call)
while a user stays signed in.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter import OIDCClient, OIDCWSGIMiddleware, ValidationError
from adapter.keys.generate import common_name, self_signed_certificate, write_keystore
from adapter.protocol.jwe import expected_id_tokens, signed_token
from examples.flask_app.app import create_app
from tests.app_server import LateApp, hello, serve
from tests.conftest import CliRunner
from tests.idp_server import IdentityServer
from tests.web_client import Browser, Stack, authorization_code

SECRET = "enc-client-secret-" + "e" * 40
SESSION_SECRET = "enc-session-secret-" + "s" * 30
PASSWORD = "enc-St0re-Pa55-19af"


@dataclass
class App:
    client_id: str
    url: str
    config: Path
    alg: str
    enc: str


@dataclass
class World:
    idp: IdentityServer
    apps: dict[str, App]


def _keystore(
    directory: Path, name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
) -> str:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    certificate = self_signed_certificate(key, common_name(name), 5, alg)
    write_keystore(directory / f"{name}.p12", "pkcs12", name, key, certificate, PASSWORD)
    return f"{name}.p12"


def _config(app: App, issuer: str, keys: list[dict[str, str]], method: str) -> None:
    credentials = f'[credentials]\nmethod = "{method}"\n'
    if method == "client_secret_basic":
        credentials += f'secret = "{SECRET}"\n'
    tables = "".join(
        "\n[[credentials.keys]]\n" + "".join(f'{k} = "{v}"\n' for k, v in key.items())
        for key in keys
    )
    app.config.write_text(
        f'issuer = "{issuer}"\nclient-id = "{app.client_id}"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        # Longer than any access token lives: every request refreshes the session (the
        # refreshed, encrypted ID token taken in).
        "token-minimum-time-to-live = 86400\n"
        f'id-token-encrypted-response-alg = "{app.alg}"\n'
        f'id-token-encrypted-response-enc = "{app.enc}"\n' + credentials + tables
    )
    app.config.chmod(0o600)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("encrypted-id-tokens")
    (directory / "secret").write_text(PASSWORD)
    rsa_late, ec_late = LateApp(), LateApp()
    with serve("wsgi", rsa_late) as rsa_url, serve("wsgi", ec_late) as ec_url:
        apps = {
            "enc-rsa": App("enc-rsa", rsa_url, directory / "rsa.toml", "RSA-OAEP-256", "A256GCM"),
            "enc-ec": App(
                "enc-ec", ec_url, directory / "ec.toml", "ECDH-ES+A256KW", "A128CBC-HS256"
            ),
        }
        clients = []
        for app in apps.values():
            client = {
                "client_id": app.client_id,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "redirect_uris": [f"{app.url}/oidc/callback"],
                "post_logout_redirect_uris": [f"{app.url}/oidc/logout"],
                "jwks_uri": f"{app.url}/k_jwks",
                "id_token_encrypted_response_alg": app.alg,
                "id_token_encrypted_response_enc": app.enc,
            }
            if app.client_id == "enc-rsa":
                client.update(
                    token_endpoint_auth_method="private_key_jwt",
                    token_endpoint_auth_signing_alg="RS256",
                )
            else:
                client.update(
                    token_endpoint_auth_method="client_secret_basic", client_secret=SECRET
                )
            clients.append(client)
        features = {"encryption": {"enabled": True}}
        with IdentityServer(clients, tmp_dir=directory, features=features) as idp:
            password = {"password-file": "secret"}
            signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            rsa_enc = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _config(
                apps["enc-rsa"],
                idp.issuer,
                [
                    {"keystore": _keystore(directory, "rsa-sig", signing), **password},
                    {
                        "keystore": _keystore(directory, "rsa-enc", rsa_enc),
                        **password,
                        "use": "enc",
                    },
                ],
                "private_key_jwt",
            )
            ec_enc = ec.generate_private_key(ec.SECP256R1())
            _config(
                apps["enc-ec"],
                idp.issuer,
                [
                    {
                        "keystore": _keystore(directory, "ec-enc", ec_enc),
                        **password,
                        "use": "enc",
                        "algorithm": "ECDH-ES+A256KW",
                    }
                ],
                "client_secret_basic",
            )
            (directory / "secret").chmod(0o600)
            rsa_late.app = create_app(apps["enc-rsa"].config)
            ec_late.app = create_app(apps["enc-ec"].config)
            yield World(idp, apps)


@pytest.fixture(params=["enc-rsa", "enc-ec"])
def app(request: pytest.FixtureRequest, world: World) -> App:
    return world.apps[str(request.param)]


def _browser(world: World, app: App) -> Browser:
    stack = Stack(world.idp, app.config, {"wsgi": httpx.HTTPTransport()})
    return Browser(stack, "wsgi", base=app.url)


def _header(token: str) -> dict[str, object]:
    part = token.split(".")[0]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_sign_in_with_an_encrypted_id_token_and_log_out_with_the_inner_one(
    world: World, app: App
) -> None:
    browser = _browser(world, app)
    page = browser.log_in()
    assert page.status_code == 200, page.text[:300]
    assert "alice" in page.text
    # The server took the encryption key from the app's /k_jwks.
    assert world.idp.wait_until(lambda logs: f"{app.url}/k_jwks" in logs)
    # Every request refreshes (token-minimum-time-to-live): the refreshed ID token comes
    # encrypted too, and the session goes on with the signed one inside.
    again = browser.get("/profile")
    assert again.status_code == 200, again.text[:300]
    refreshes = re.findall(
        rf'"grant_type":"refresh_token","client_id":"{app.client_id}"', world.idp.settled_logs()
    )
    assert refreshes
    out = browser.post("/oidc/logout", data={"csrf": browser.csrf()})
    assert out.status_code == 302
    location = out.headers["location"]
    hint = parse_qs(urlsplit(location).query)["id_token_hint"][0]
    assert hint.count(".") == 2, "the session keeps the signed ID token, never the JWE"
    assert _header(hint)["alg"] == "RS256"
    # The server accepts the hint: it shows its logout confirmation (an invalid hint is an
    # error page) and sends the browser back to the app afterwards.
    confirm = browser.http.get(location)
    assert confirm.status_code == 200, confirm.text[:300]
    form = confirm.text.split('action="', 1)[1].split('"', 1)[0]
    xsrf = confirm.text.split('name="xsrf" value="', 1)[1].split('"', 1)[0]
    done = browser.http.post(urljoin(str(confirm.url), form), data={"xsrf": xsrf, "logout": "yes"})
    for _ in range(5):
        assert done.is_redirect, done.text[:300]
        target = urljoin(str(done.url), done.headers["location"])
        if target.startswith(app.url):
            break
        done = browser.http.get(target)
    else:
        raise AssertionError("the server did not send the browser back")
    browser.http.close()


def test_the_token_endpoint_sends_a_jwe_that_the_client_decrypts_also_on_refresh(
    world: World, app: App
) -> None:
    callback = f"{app.url}/oidc/callback"
    with OIDCClient(app.config) as oidc, httpx.Client(timeout=10) as http:
        login = oidc.login_request(callback, scope="openid profile email")
        query = authorization_code(http, http.get(login.url), callback)
        tokens = oidc.exchange_code(query["code"], callback, login.code_verifier)
        assert tokens.id_token is not None
        assert tokens.id_token.count(".") == 4, "encrypted: a JWE compact serialisation"
        header = _header(tokens.id_token)
        assert (header["alg"], header["enc"]) == (app.alg, app.enc)
        claims = oidc.validate_id_token(tokens.id_token, nonce=login.nonce)
        assert claims["sub"] == "alice"
        assert tokens.refresh_token is not None
        refreshed = oidc.refresh(tokens.refresh_token)
        assert refreshed.id_token is not None
        assert refreshed.id_token.count(".") == 4
        assert oidc.validate_id_token(refreshed.id_token)["sub"] == "alice"
        # Handed the JWE, the end-session URL carries the signed token inside.
        logout = oidc.end_session_url(tokens.id_token, f"{app.url}/oidc/logout")
        hint = parse_qs(urlsplit(logout).query)["id_token_hint"][0]
        assert hint.count(".") == 2
        assert hint == signed_token(tokens.id_token, expected_id_tokens(oidc.config, oidc.key_ring))


def test_a_plain_signed_id_token_is_refused_where_encryption_is_configured(
    world: World, app: App
) -> None:
    """The configuration requires encryption: the signed token inside, presented on its
    own, is refused (a downgrade), although its signature is the server's."""
    callback = f"{app.url}/oidc/callback"
    with OIDCClient(app.config) as oidc, httpx.Client(timeout=10) as http:
        login = oidc.login_request(callback)
        query = authorization_code(http, http.get(login.url), callback)
        tokens = oidc.exchange_code(query["code"], callback, login.code_verifier)
        assert tokens.id_token is not None
        inner = signed_token(tokens.id_token, expected_id_tokens(oidc.config, oidc.key_ring))
        with pytest.raises(ValidationError, match="not encrypted"):
            oidc.validate_id_token(inner, nonce=login.nonce)


# --- an encryption key's rotation, with the server's key cache cleared ------------------------


ROTATING = "enc-rotating"


def _enc_table(name: str, extra: str = "") -> str:
    return (
        f'\n[[credentials.keys]]\nkeystore = "{name}.p12"\npassword-file = "secret"\n'
        f'use = "enc"\nkid = "{name}"\n{extra}'
    )


def _rotating_config(path: Path, issuer: str, tables: str) -> None:
    path.write_text(
        f'issuer = "{issuer}"\nclient-id = "{ROTATING}"\npublic-paths = ["/"]\n'
        f'session-secret = "{SESSION_SECRET}"\n'
        'id-token-encrypted-response-alg = "RSA-OAEP-256"\n'
        'id-token-encrypted-response-enc = "A256GCM"\n'
        f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n' + tables
    )
    path.chmod(0o600)


def _login_kid(config: Path, url: str) -> str:
    """Sign alice in through OIDCClient: the kid the server encrypted her ID token to (the
    token decrypted and verified, or this fails)."""
    callback = f"{url}/oidc/callback"
    with OIDCClient(config) as oidc, httpx.Client(timeout=10) as http:
        login = oidc.login_request(callback)
        query = authorization_code(http, http.get(login.url), callback)
        tokens = oidc.exchange_code(query["code"], callback, login.code_verifier)
        assert tokens.id_token is not None
        assert oidc.validate_id_token(tokens.id_token, nonce=login.nonce)["sub"] == "alice"
        return str(_header(tokens.id_token)["kid"])


def test_an_encryption_key_rotates_while_users_stay_signed_in(
    tmp_path: Path, cli: CliRunner
) -> None:
    """next → active → retired, the server's cache cleared with keys clear-server-cache:
    the server keeps encrypting to the old key (cached; Keycloak too picks by alg) until the
    cache is cleared, the old key decrypts until it leaves, and a signed-in user keeps going."""
    (tmp_path / "secret").write_text(PASSWORD)
    (tmp_path / "secret").chmod(0o600)
    _keystore(tmp_path, "enc-old", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    late = LateApp()
    with serve("wsgi", late) as url:
        client = {
            "client_id": ROTATING,
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "redirect_uris": [f"{url}/oidc/callback"],
            "post_logout_redirect_uris": [f"{url}/oidc/logout"],
            "jwks_uri": f"{url}/k_jwks",
            "id_token_encrypted_response_alg": "RSA-OAEP-256",
            "id_token_encrypted_response_enc": "A256GCM",
        }
        realm = "http://127.0.0.1:{port}/realms/test"
        features = {"encryption": {"enabled": True}}
        with IdentityServer(
            [client], tmp_dir=tmp_path, issuer=realm, admin_clients=[ROTATING], features=features
        ) as idp:
            config = tmp_path / "adapter.toml"
            _rotating_config(config, idp.issuer, _enc_table("enc-old"))
            late.app = middleware = OIDCWSGIMiddleware(hello, config)
            try:
                stack = Stack(idp, config, {"wsgi": httpx.HTTPTransport()})
                alice = Browser(stack, "wsgi", base=url)
                assert alice.log_in().status_code == 200
                assert _login_kid(config, url) == "enc-old"

                staged = cli("keys", "rotate", "--config", str(config), "--alias", "enc-new",
                             "--use", "enc", "--out", "enc-new.p12", "--store-password-env",
                             "STORE_PW", "--activate-in", "0", "--write",
                             env={"STORE_PW": PASSWORD})  # fmt: skip
                assert staged.returncode == 0, staged.stderr
                text = config.read_text().replace(
                    'password-env = "STORE_PW"', 'password-file = "secret"'
                )
                config.write_text(text)
                assert middleware.reload(), middleware.status
                published = httpx.get(f"{url}/k_jwks").json()["keys"]
                new_kid = next(k["kid"] for k in published if k["kid"] != "enc-old")
                assert {k["kid"] for k in published} == {"enc-old", new_kid}, "the overlap"
                assert alice.get("/profile").status_code == 200
                assert _login_kid(config, url) == "enc-old", "cached at the server"

                old = _enc_table("enc-old")
                config.write_text(
                    config.read_text().replace(old, _enc_table("enc-old", 'state = "retired"\n'))
                )
                assert middleware.reload(), middleware.status
                assert [k["kid"] for k in httpx.get(f"{url}/k_jwks").json()["keys"]] == [new_kid]
                assert _login_kid(config, url) == "enc-old", "retired: still decrypts"

                cleared = cli("keys", "clear-server-cache", "--config", str(config))
                assert cleared.returncode == 0, cleared.stderr
                assert "dropped its cached client keys" in cleared.stdout
                assert _login_kid(config, url) == new_kid
                assert alice.get("/profile").status_code == 200
                alice.http.close()
            finally:
                middleware.close()
