"""``profile = "fapi2"`` (docs/fapi.md): what FAPI 2.0 asks of a client, applied and enforced
at load. ``config check`` refuses a configuration that cannot meet it in one line naming the
field (a client secret, an RS256 key, PAR turned off) and prints what it enforces; an RSA key
without an algorithm signs PS256; and a real login under ``fapi2-message-signing`` against the
test identity server (PAR required, signed request objects required, PS256 ID tokens) is
pushed with a request object and signed in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.jwk import ECKey

from adapter import ConfigError, OIDCWSGIMiddleware, current_identity, load_config, load_key_ring
from tests.conftest import CliRunner
from tests.idp_server import IdentityServer
from tests.integration.test_cli_config import assert_user_error
from tests.web_client import Browser, Stack, web_client

ISSUER = "https://sso.example.com/realms/bank"
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "fapi-key-1"
ENC_KEY = ec.generate_private_key(ec.SECP256R1())  # the answers' encryption key (JARM §2.3)
ENC_KID = "fapi-enc-1"
APP = "http://127.0.0.1:8765"


def write(directory: Path, body: str) -> Path:
    path = directory / "adapter.toml"
    path.write_text(body)
    path.chmod(0o600)
    return path


def pem(directory: Path, private: object = KEY) -> None:
    data = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())  # type: ignore[attr-defined]
    (directory / "key.pem").write_bytes(data)
    (directory / "key.pem").chmod(0o600)


def keyed(issuer: str = ISSUER, profile: str = "fapi2", extra: str = "", key: str = "") -> str:
    return (
        f'issuer = "{issuer}"\nclient-id = "bank-app"\nprofile = "{profile}"\n{extra}'
        '[credentials]\nmethod = "private_key_jwt"\n'
        f'[[credentials.keys]]\nkeystore = "key.pem"\nkid = "{KID}"\n{key}'
    )


def test_a_client_secret_is_refused_in_one_line_naming_the_method(
    tmp_path: Path, cli: CliRunner
) -> None:
    write(
        tmp_path,
        f'issuer = "{ISSUER}"\nclient-id = "bank-app"\nprofile = "fapi2"\n'
        '[credentials]\nmethod = "client_secret_basic"\nsecret = "s3cr3t-value-not-shown"\n',
    )
    line = assert_user_error(
        cli("config", "check", "adapter.toml"),
        'credentials.method: client_secret_basic is refused by profile "fapi2"',
    )
    assert "s3cr3t-value-not-shown" not in line


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ('pushed-authorization-requests = "never"\n', "", "pushed-authorization-requests:"),
        ('id-token-signing-alg = "RS256"\n', "", "id-token-signing-alg: RS256 is refused"),
        ("", 'algorithm = "ES256"\n', None),  # fine
    ],
)
def test_settings_that_contradict_the_profile_are_refused(
    tmp_path: Path, extra: str, key: str, message: str | None
) -> None:
    pem(tmp_path)
    path = write(tmp_path, keyed(extra=extra, key=key))
    if message is None:
        config = load_config(path)
        assert config.web.pushed_authorization_requests == "always"  # the profile's
        assert config.id_token_signing_alg == "PS256"
        assert config.credentials.assertion_typ == "client-authentication+jwt"
        assert config.web.request_objects == "off"  # only message signing signs logins
        return
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_rsa_keys_sign_ps256_and_rs256_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ring = load_key_ring(load_config(write(tmp_path, keyed())))
    assert ring.active().alg == "PS256"  # not RS256, the default outside the profile
    with pytest.raises(ConfigError, match=r"keys\[0\]\.algorithm: RS256 is refused"):
        load_key_ring(load_config(write(tmp_path, keyed(key='algorithm = "RS256"\n'))))


def test_config_check_prints_what_the_profile_enforces(tmp_path: Path, cli: CliRunner) -> None:
    pem(tmp_path)
    write(tmp_path, keyed(profile="fapi2-message-signing"))
    checked = cli("config", "check", "adapter.toml")
    assert checked.returncode == 0, checked.stderr
    enforced = [line for line in checked.stdout.splitlines() if line.startswith("profile:")]
    assert (
        enforced[0]
        == "profile:       fapi2-message-signing: every login pushed (PAR) with PKCE S256"
    )
    assert any("every login signed (request objects, JAR)" in line for line in enforced)
    assert any("sender-constrained" in line for line in enforced)


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    client = web_client(
        "unused-" + "u" * 40,
        client_id="bank-app",
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="ES256",
        jwks={"keys": [{**ECKey.import_key(KEY.public_key()).as_dict(), "kid": KID}]},
        require_signed_request_object=True,
        request_object_signing_alg="ES256",
        id_token_signed_response_alg="PS256",
        authorization_signed_response_alg="PS256",  # JARM: the answer signed like ID tokens
    )
    public = {**ECKey.import_key(ENC_KEY.public_key()).as_dict(), "kid": ENC_KID}
    encrypted = {
        **client,
        "client_id": "bank-enc",
        "jwks": {
            "keys": [*client["jwks"]["keys"], {**public, "use": "enc", "alg": "ECDH-ES+A256KW"}]
        },
        "authorization_encrypted_response_alg": "ECDH-ES+A256KW",
        "authorization_encrypted_response_enc": "A256GCM",
    }
    features = {
        "encryption": {"enabled": True},
        "jwtResponseModes": {"enabled": True},
        "pushedAuthorizationRequests": {
            "enabled": True,
            "requirePushedAuthorizationRequests": True,
        },
    }
    with IdentityServer(
        [client, encrypted], tmp_dir=tmp_path_factory.mktemp("fapi-idp"), features=features
    ) as server:
        yield server


def whoami(environ: dict[str, object], start_response: object) -> list[bytes]:
    identity = current_identity(environ)
    start_response("200 OK", [("Content-Type", "application/json")])  # type: ignore[operator]
    return [json.dumps({"user": identity.display_name if identity else None}).encode()]


def signed_in_as_alice(
    idp: IdentityServer, path: Path
) -> tuple[OIDCWSGIMiddleware, list[httpx.URL]]:
    """Alice signed in to an app of ``path`` (checked); the app and its callback URLs."""
    served = OIDCWSGIMiddleware(whoami, path)
    browser = Browser(Stack(idp, path, {"wsgi": httpx.WSGITransport(app=served)}), "wsgi")
    sent: list[httpx.URL] = []
    browser.http.event_hooks["request"].append(lambda request: sent.append(request.url))
    assert browser.log_in("/profile", "alice").json() == {"user": "alice"}
    return served, [url for url in sent if url.path == "/oidc/callback"]


def test_a_login_under_message_signing_is_pushed_signed_and_checked(
    idp: IdentityServer, tmp_path: Path
) -> None:
    pem(tmp_path)
    path = write(
        tmp_path,
        keyed(
            idp.issuer,
            "fapi2-message-signing",
            f'session-secret = "{"s" * 40}"\n',
            'algorithm = "ES256"\n',
        ),
    )

    served, callbacks = signed_in_as_alice(idp, path)
    # The server's answer came signed (JARM, query.jwt): one JWT, no bare code or state.
    assert [set(url.params) for url in callbacks] == [{"response"}]
    logs = idp.settled_logs()
    assert '"event":"par.success","client_id":"bank-app","request_object":true' in logs
    assert '"grant_type":"authorization_code","client_id":"bank-app"' in logs
    served.close()


def test_a_callback_without_a_verified_signed_response_is_refused(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """With signed responses asked for, a plain answer (code and state in the query) or a JWT
    the server did not sign is refused: 400, no token request."""
    pem(tmp_path)
    path = write(
        tmp_path,
        keyed(idp.issuer, "fapi2-message-signing", f'session-secret = "{"s" * 40}"\n',
              'algorithm = "ES256"\n'),
    )  # fmt: skip
    served = OIDCWSGIMiddleware(lambda environ, start: [], path)
    before = idp.settled_logs().count('"grant_type":"authorization_code"')
    with httpx.Client(transport=httpx.WSGITransport(app=served), base_url=APP) as http:
        for query in ("code=abc&state=xyz", "response=e30.e30.c2ln"):
            answer = http.get(f"/oidc/callback?{query}", headers={"Accept": "text/html"})
            assert answer.status_code == 400, answer.text
            assert "not signed by the identity server" in answer.text
    assert idp.settled_logs().count('"grant_type":"authorization_code"') == before
    served.close()


def test_an_encrypted_signed_response_is_decrypted_with_the_apps_key(
    idp: IdentityServer, tmp_path: Path
) -> None:
    """JARM §2.3: the client registered an encryption of its answers; the server encrypts the
    signed answer to the app's ``use = "enc"`` key (ECDH-ES+A256KW, A256GCM), the app
    decrypts it and checks the signature inside."""
    pem(tmp_path)
    (tmp_path / "enc.pem").write_bytes(
        ENC_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (tmp_path / "enc.pem").chmod(0o600)
    body = keyed(
        idp.issuer,
        "fapi2-message-signing",
        f'session-secret = "{"s" * 40}"\n',
        'algorithm = "ES256"\n',
    ).replace('client-id = "bank-app"', 'client-id = "bank-enc"')
    body += (
        f'[[credentials.keys]]\nkeystore = "enc.pem"\nkid = "{ENC_KID}"\nuse = "enc"\n'
        'algorithm = "ECDH-ES+A256KW"\n'
    )
    path = write(tmp_path, body)

    served, callbacks = signed_in_as_alice(idp, path)
    assert callbacks[0].params["response"].count(".") == 4, "a JWE, five parts"
    served.close()
