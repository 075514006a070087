"""Client authentication: what each httpx.Auth puts on the wire."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qs, unquote_plus

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import JWKRegistry, OctKey

from adapter.config.secret import Secret
from adapter.keys.generate import parse_subject, self_signed_certificate
from adapter.keys.keyring import KeyRing, SigningKey, default_kid
from adapter.protocol.client_auth import (
    ASSERTION_TYPE,
    ClientSecretBasic,
    ClientSecretJwt,
    ClientSecretPost,
    PrivateKeyJwt,
)

ISSUER = "https://sso.example.com/realms/demo"
TOKEN_ENDPOINT = ISSUER + "/protocol/openid-connect/token"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
CERT = self_signed_certificate(EC_KEY, parse_subject("CN=client"), 10, "ES256")


def ring() -> KeyRing:
    key = SigningKey(
        kid=default_kid(EC_KEY.public_key()), alg="ES256", private_key=EC_KEY, cert_chain=(CERT,)
    )
    return KeyRing([key])


def capture(auth: httpx.Auth, sends: int = 1) -> list[httpx.Request]:
    """Send ``sends`` token requests through ``auth`` to a transport that records them."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "x"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        for _ in range(sends):
            client.post(TOKEN_ENDPOINT, data={"grant_type": "client_credentials"}, auth=auth)
    return seen


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def decode_part(part: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return result


def test_basic_form_encodes_id_and_secret() -> None:
    (request,) = capture(ClientSecretBasic("my app", Secret("p@ss:w+rd%é")))
    scheme, _, value = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(value).decode().partition(":")
    assert (user, password) == ("my+app", "p%40ss%3Aw%2Brd%25%C3%A9")
    assert (unquote_plus(user), unquote_plus(password)) == ("my app", "p@ss:w+rd%é")


def test_post_adds_fields_and_keeps_the_grant() -> None:
    (request,) = capture(ClientSecretPost("app", Secret("s3cret")))
    assert form(request) == {
        "grant_type": "client_credentials",
        "client_id": "app",
        "client_secret": "s3cret",
    }
    assert request.headers["Content-Length"] == str(len(request.content))
    assert "Authorization" not in request.headers


AuthFactory = Callable[[], httpx.Auth]
ASSERTION_AUTHS: dict[str, AuthFactory] = {
    "private_key_jwt": lambda: PrivateKeyJwt("app", ring(), ISSUER, lifetime=45),
    "client_secret_jwt": lambda: ClientSecretJwt(
        "app", Secret("a-long-client-secret-of-32-bytes!"), ISSUER, "HS512", lifetime=45
    ),
}


@pytest.mark.parametrize("method", list(ASSERTION_AUTHS))
def test_assertion_claims(method: str) -> None:
    requests = capture(ASSERTION_AUTHS[method](), sends=2)
    jtis = set()
    for request in requests:
        fields = form(request)
        assert fields["client_assertion_type"] == ASSERTION_TYPE
        assert fields["grant_type"] == "client_credentials"
        header, claims = (decode_part(p) for p in fields["client_assertion"].split(".")[:2])
        assert claims["iss"] == claims["sub"] == "app"
        assert claims["aud"] == ISSUER
        assert isinstance(claims["aud"], str)
        assert isinstance(claims["iat"], int)
        assert isinstance(claims["exp"], int)
        assert claims["exp"] - claims["iat"] == 45
        assert claims["nbf"] == claims["iat"]
        jtis.add(claims["jti"])
        assert "typ" not in header
    assert len(jtis) == 2, "every request, a retry included, carries a fresh jti"


def test_thousand_assertions_have_thousand_jtis() -> None:
    auth = PrivateKeyJwt("app", ring(), ISSUER)
    jtis = {decode_part(auth.assertion().split(".")[1])["jti"] for _ in range(1000)}
    assert len(jtis) == 1000
    assert all(len(base64.urlsafe_b64decode(str(j) + "==")) >= 16 for j in jtis)


def test_private_key_jwt_header_and_signature() -> None:
    keys = ring()
    auth = PrivateKeyJwt("app", keys, TOKEN_ENDPOINT, x5t=True, x5t_s256=True, typ="JWT")
    token = auth.assertion()
    header = decode_part(token.split(".")[0])
    published = json.loads(keys.jwks_bytes)["keys"][0]
    assert header == {
        "alg": "ES256",
        "kid": published["kid"],
        "typ": "JWT",
        "x5t": published["x5t"],
        "x5t#S256": published["x5t#S256"],
    }
    verified = jws.deserialize_compact(token, JWKRegistry.import_key(published), ["ES256"])
    assert json.loads(verified.payload)["aud"] == TOKEN_ENDPOINT


def test_client_secret_jwt_verifies_with_the_secret() -> None:
    secret = "another-client-secret-of-32-bytes"
    token = ClientSecretJwt("app", Secret(secret), ISSUER, "HS256").assertion()
    verified = jws.deserialize_compact(token, OctKey.import_key(secret), ["HS256"])
    assert json.loads(verified.payload)["sub"] == "app"
    assert decode_part(token.split(".")[0]) == {"alg": "HS256"}


def test_backdate_moves_the_whole_window_and_keeps_the_lifetime() -> None:
    """exp - iat is the configured lifetime, backdated or not (docs/configuration.md)."""
    auth = PrivateKeyJwt("app", ring(), ISSUER, lifetime=60, backdate=5, clock=lambda: 1000.0)
    claims = decode_part(auth.assertion().split(".")[1])
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (995, 995, 1055)
    assert claims["exp"] - claims["iat"] == 60


def test_reprs_hold_no_secret() -> None:
    secret = Secret("do-not-print-me")
    texts = [repr(ClientSecretBasic("app", secret)), repr(ClientSecretPost("app", secret))]
    texts.append(repr(ClientSecretJwt("app", secret, ISSUER)))
    assert all("do-not-print-me" not in text for text in texts)


@pytest.mark.parametrize("method", list(ASSERTION_AUTHS))
def test_form_auth_sends_one_content_type(method: str) -> None:
    (request,) = capture(ASSERTION_AUTHS[method]())
    assert request.headers.get_list("content-type") == ["application/x-www-form-urlencoded"]
    (post,) = capture(ClientSecretPost("app", Secret("s")))
    assert post.headers.get_list("content-type") == ["application/x-www-form-urlencoded"]


def test_the_previous_key_retry_warns_once_per_switch_and_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a switch every token request may need the previous-key retry until the server's
    JWKS cache catches up: one warning for the switch, the later retries at debug."""
    from adapter.protocol import flows

    new_key = ec.generate_private_key(ec.SECP256R1())
    new = SigningKey(
        kid=default_kid(new_key.public_key()),
        alg="ES256",
        private_key=new_key,
        cert_chain=(self_signed_certificate(new_key, parse_subject("CN=new"), 10, "ES256"),),
    )
    (previous,) = ring().keys
    auth = PrivateKeyJwt("app", KeyRing([new]), TOKEN_ENDPOINT, fallback=lambda: previous)

    def handler(request: httpx.Request) -> httpx.Response:
        header = decode_part(form(request)["client_assertion"].split(".")[0])
        if header["kid"] == new.kid:  # the server's JWKS cache predates the switch
            return httpx.Response(401, json={"error": "invalid_client"})
        return httpx.Response(200, json={"access_token": "x", "token_type": "Bearer"})

    with (
        caplog.at_level("DEBUG", logger="adapter.protocol.flows"),
        httpx.Client(transport=httpx.MockTransport(handler)) as client,
    ):
        for _ in range(5):
            flows.run(flows.client_credentials(TOKEN_ENDPOINT), client, auth)
    retries = [r for r in caplog.records if "retrying once with the previous key" in r.message]
    assert len(retries) == 5
    assert [r.levelname for r in retries].count("WARNING") == 1
    assert previous.kid in retries[0].message
    assert new.kid in retries[0].message
