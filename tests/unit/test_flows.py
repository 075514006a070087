"""Flows driven by hand: what they send and how they read each kind of answer."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapter.errors import ConfigError, ProviderError, TokenError
from adapter.protocol import flows

TOKEN_ENDPOINT = "https://sso.example.com/token"


def answer(flow: flows.Flow[object], response: httpx.Response) -> object:
    """Start ``flow``, check it asks for one request, answer it, return the result."""
    step = next(flow)
    response.request = step.request
    with pytest.raises(StopIteration) as done:
        flow.send(response)
    return done.value.value


def test_client_credentials_request() -> None:
    flow = flows.client_credentials(TOKEN_ENDPOINT, scope="api:read", resource="urn:api")
    step = next(flow)
    assert step.authenticate
    assert step.request.method == "POST"
    assert parse_qs(step.request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["api:read"],
        "resource": ["urn:api"],
    }


def test_token_response_is_parsed() -> None:
    result = answer(
        flows.client_credentials(TOKEN_ENDPOINT),
        httpx.Response(200, json={"access_token": "at", "expires_in": 30}),
    )
    assert isinstance(result, flows.TokenSet)
    assert result.access_token == "at"


@pytest.mark.parametrize("status", [400, 401])
def test_oauth_error_becomes_token_error(status: int) -> None:
    body = {"error": "invalid_client", "error_description": "client authentication failed"}
    with pytest.raises(TokenError) as raised:
        answer(flows.client_credentials(TOKEN_ENDPOINT), httpx.Response(status, json=body))
    assert (raised.value.error, raised.value.description) == (
        "invalid_client",
        "client authentication failed",
    )


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, text="boom"),
        httpx.Response(200, text="<html>"),
        httpx.Response(400, text="not json"),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
)
def test_server_failures_become_provider_errors(response: httpx.Response) -> None:
    with pytest.raises(ProviderError, match="token request"):
        answer(flows.client_credentials(TOKEN_ENDPOINT), response)


def test_introspection_needs_active() -> None:
    ok = answer(
        flows.introspect("https://s/introspect", "t"), httpx.Response(200, json={"active": False})
    )
    assert ok == {"active": False}
    with pytest.raises(ProviderError, match="active"):
        answer(flows.introspect("https://s/introspect", "t"), httpx.Response(200, json={}))


def test_authorization_request_has_state_nonce_and_pkce() -> None:
    first = flows.authorization_request("https://s/auth?x=1", "app", "https://app/cb")
    second = flows.authorization_request("https://s/auth?x=1", "app", "https://app/cb")
    query = parse_qs(urlsplit(first.url).query)
    assert query["x"] == ["1"]
    assert query["state"] == [first.state]
    assert query["nonce"] == [first.nonce]
    assert query["code_challenge_method"] == ["S256"]
    digest = hashlib.sha256(first.code_verifier.encode()).digest()
    assert query["code_challenge"] == [base64.urlsafe_b64encode(digest).rstrip(b"=").decode()]
    assert 43 <= len(first.code_verifier) <= 128
    assert {first.state, first.nonce, first.code_verifier}.isdisjoint(
        {second.state, second.nonce, second.code_verifier}
    )
    assert first.state not in repr(first)


def test_transport_errors_become_provider_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with (
        httpx.Client(transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(ProviderError, match="cannot connect"),
    ):
        flows.run(flows.client_credentials(TOKEN_ENDPOINT), client)


def test_a_request_object_is_signed_by_the_active_key_for_the_issuer() -> None:
    """JAR (RFC 9101): the parameters, plus iss (the client), aud (the issuer), a lifetime of
    at most 60 s, nbf and a jti, under typ oauth-authz-req+jwt with the active key's kid."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import ECKey

    from adapter.keys.keyring import KeyRing, SigningKey
    from adapter.protocol.request_object import request_signer

    private = ec.generate_private_key(ec.SECP256R1())
    ring = KeyRing([SigningKey("k1", "ES256", private)])
    sign = request_signer(ring, "my-app", "https://sso.example.com/realms/r", clock=lambda: 1000)
    token = sign({"scope": "openid", "state": "s1"})
    decoded = jose_jwt.decode(token, ECKey.import_key(private.public_key()))
    assert decoded.header == {"alg": "ES256", "kid": "k1", "typ": "oauth-authz-req+jwt"}
    claims = decoded.claims
    assert (claims["iss"], claims["aud"]) == ("my-app", "https://sso.example.com/realms/r")
    assert (claims["scope"], claims["state"]) == ("openid", "s1")
    assert claims["nbf"] == claims["iat"] == 1000
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["jti"]) >= 20
    behind = request_signer(ring, "my-app", "https://sso", backdate=30, clock=lambda: 1000)
    moved = jose_jwt.decode(behind({}), ECKey.import_key(private.public_key())).claims
    assert (moved["iat"], moved["nbf"], moved["exp"]) == (970, 970, 1030)
    refusing = request_signer(ring, "my-app", "https://sso", ("PS256", "RS256"))
    with pytest.raises(ConfigError, match="takes PS256, RS256, the active key k1 signs ES256"):
        refusing({"scope": "openid"})


def test_a_signed_login_url_carries_the_request_and_what_openid_connect_repeats() -> None:
    signed = flows.authorization_request(
        "https://sso/auth", "my-app", "https://app/cb", "openid email", sign=lambda p: "JWT"
    )
    query = parse_qs(urlsplit(signed.url).query)
    assert query == {
        "client_id": ["my-app"], "response_type": ["code"], "scope": ["openid email"],
        "request": ["JWT"],
    }  # fmt: skip


def test_a_signed_introspection_answer_must_come_from_the_issuer_for_this_client() -> None:
    """RFC 9701: the JWT's iss is the server, its aud names the client, and it holds a
    token_introspection object with a boolean active; anything else is refused."""
    from adapter.errors import ValidationError

    good = {"iss": "https://sso", "aud": "app", "token_introspection": {"active": True}}
    assert flows.signed_introspection(good, "https://sso", "app") == {"active": True}
    for bad in (
        {**good, "iss": "https://evil"},
        {**good, "aud": ["other"]},
        {**good, "token_introspection": {"active": "yes"}},
        {"iss": "https://sso", "aud": "app"},
    ):
        with pytest.raises(ValidationError):
            flows.signed_introspection(bad, "https://sso", "app")


def test_introspection_asks_for_a_signed_answer_and_hands_a_jwt_back_unread() -> None:
    flow = flows.introspect("https://sso/introspect", "tok", "access_token", signed=True)
    step = next(flow)
    assert step.request.headers["accept"].startswith("application/token-introspection+jwt")
    response = httpx.Response(
        200, text="a.b.c", headers={"content-type": "application/token-introspection+jwt"}
    )
    response.request = step.request
    with pytest.raises(StopIteration) as done:
        flow.send(response)
    assert done.value.value == {"jwt": "a.b.c"}
