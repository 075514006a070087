"""A hostile or failing identity server: bounded work, AdapterErrors only, no hammering."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from adapter.errors import ProviderError, TokenError, ValidationError
from adapter.jose import b64url, b64url_decode, encode_header, make_signer, sign_compact
from adapter.protocol.flows import client_credentials, pushed_authorization_request, run
from adapter.protocol.provider import Provider
from adapter.protocol.service_account import ServiceAccountAuth
from adapter.protocol.tokens import (
    TokenSet,
    ValidatedTokenCache,
    check_access_token_type,
    parse_signed,
    verified_claims,
)

ISSUER = "https://sso.example.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_deeply_nested_token_header_is_a_validation_error() -> None:
    header = b64url(b"[" * 1500)
    with pytest.raises(ValidationError):
        parse_signed(f"{header}.e30.AA", ("RS256",))
    with pytest.raises(ValidationError, match="too long"):
        parse_signed("a" * 20_000 + ".e30.AA", ("RS256",))


def test_non_canonical_base64url_is_refused() -> None:
    assert b64url_decode("AA") == b"\x00"
    with pytest.raises(ValueError, match="canonical"):
        b64url_decode("AB")


def test_nan_expiry_is_refused() -> None:
    header = encode_header({"alg": "RS256"})
    signing_input = header + b64url(b'{"iss":"x","exp":NaN}').encode()
    token = signing_input + b"." + b64url(make_signer("RS256", KEY)(signing_input)).encode()
    with pytest.raises(ValidationError, match="not a JSON object"):
        verified_claims(parse_signed(token.decode(), ("RS256",)), [KEY.public_key()])


def signed(header: dict[str, Any], claims: dict[str, Any]) -> Any:
    token = sign_compact(encode_header(header), claims, make_signer("RS256", KEY))
    parsed = parse_signed(token, ("RS256",))
    return parsed, verified_claims(parsed, [KEY.public_key()])


@pytest.mark.parametrize(
    ("header", "claims", "accepted"),
    [
        ({"alg": "RS256", "typ": "at+jwt"}, {"sub": "a"}, True),
        ({"alg": "RS256"}, {"typ": "Bearer"}, True),
        ({"alg": "RS256"}, {"sub": "a", "scope": "openid api"}, True),
        ({"alg": "RS256"}, {"sub": "a", "scp": ["api"]}, True),  # Entra ID, Okta
        ({"alg": "RS256"}, {"sub": "a", "client_id": "app"}, True),
        ({"alg": "RS256"}, {"sub": "a", "aud": "app"}, False),  # an ID token without nonce
        ({"alg": "RS256"}, {"sub": "a", "aud": "app", "at_hash": "x", "scope": "y"}, False),
        ({"alg": "RS256"}, {"typ": "ID", "sub": "a"}, False),
        ({"alg": "RS256"}, {"typ": "Refresh"}, False),
        ({"alg": "RS256"}, {"nonce": "n", "sub": "a"}, False),
        ({"alg": "RS256", "typ": "logout+jwt"}, {"sub": "a"}, False),
    ],
)
def test_only_access_tokens_pass_as_access_tokens(
    header: dict[str, Any], claims: dict[str, Any], accepted: bool
) -> None:
    token, verified = signed(header, claims)
    if accepted:
        check_access_token_type(token, verified)
    else:
        with pytest.raises(ValidationError, match="not an access token"):
            check_access_token_type(token, verified)


def test_cached_claims_are_read_only() -> None:
    cache = ValidatedTokenCache()
    cache.put("t", {"exp": 4_000_000_000, "realm_access": {"roles": ["user"]}})
    claims = cache.get("t", now=1)
    assert claims is not None
    with pytest.raises(TypeError):
        claims["sub"] = "root"  # type: ignore[index]
    assert claims["realm_access"]["roles"] == ("user",)


def test_extra_parameters_cannot_replace_protocol_ones() -> None:
    flow = pushed_authorization_request("https://s/par", "https://s/auth", "app", "https://a/cb",
                                        extra={"code_challenge_method": "plain"})  # fmt: skip
    with pytest.raises(ValueError, match="code_challenge_method"):
        next(flow)


class Server:
    """A MockTransport identity server whose endpoints can be made to fail."""

    def __init__(self) -> None:
        self.jwks_status = 200
        self.calls: dict[str, int] = {}
        jwk = RSAKey.import_key(KEY.public_key()).as_dict()
        self.jwks = {"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] = self.calls.get(path, 0) + 1
        if path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "token_endpoint": ISSUER + "/t",
                                             "jwks_uri": ISSUER + "/jwks"})  # fmt: skip
        if path == "/jwks":
            return httpx.Response(self.jwks_status, json=self.jwks)
        if path == "/deep":
            return httpx.Response(400, content=b"[" * 100_000)
        if path == "/huge":
            return httpx.Response(200, content=b" " * 2_000_000)
        return httpx.Response(404)


def test_failing_jwks_is_not_hammered_and_stale_keys_keep_serving() -> None:
    server = Server()
    clock = [0.0]
    provider = Provider(ISSUER, min_refetch_interval=10, clock=lambda: clock[0])
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        assert provider.keys_for(client, "k1", "RS256")
        server.jwks_status = 503
        clock[0] = 11
        for index in range(20):
            assert provider.keys_for(client, f"forged-{index}", "RS256") == []
        assert server.calls["/jwks"] == 2, "one refetch attempt, however many forged kids"
        assert provider.keys_for(client, "k1", "RS256"), "the cached key still verifies"


def test_jwks_down_from_the_start_fails_fast_for_waiters() -> None:
    server = Server()
    server.jwks_status = 503
    provider = Provider(ISSUER)
    errors: list[Exception] = []
    with httpx.Client(transport=httpx.MockTransport(server)) as client:

        def validate() -> None:
            try:
                provider.keys_for(client, "k1", "RS256")
            except ProviderError as error:
                errors.append(error)

        threads = [threading.Thread(target=validate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(errors) == 8
    assert server.calls["/jwks"] == 1


def test_hostile_bodies_are_provider_errors() -> None:
    server = Server()
    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        with pytest.raises(ProviderError):
            run(client_credentials(ISSUER + "/deep"), client)
        with pytest.raises(ProviderError, match="larger than"):
            run(client_credentials(ISSUER + "/huge"), client)


def test_service_account_origins_margin_and_failures() -> None:
    fetched: list[int] = []

    def fetch() -> TokenSet:
        fetched.append(1)
        return TokenSet(access_token=f"tok-{len(fetched)}", expires_at=None)

    seen: dict[str, str | None] = {}

    def api(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers.get("authorization")
        return httpx.Response(200)

    auth = ServiceAccountAuth(fetch, allowed_origins=["https://api.example.com"])
    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as client:
        client.get("https://api.example.com/x")
        client.get("https://elsewhere.example.com/x")
    assert seen == {"api.example.com": "Bearer tok-1", "elsewhere.example.com": None}

    def short_lived() -> TokenSet:
        import time

        fetched.append(1)
        return TokenSet(access_token="short", expires_at=time.time() + 20)

    auth = ServiceAccountAuth(short_lived, refresh_margin=30)
    before = len(fetched)
    auth.token()
    auth.token()
    assert len(fetched) - before == 1, "the margin is at most half the token's lifetime"

    def refused() -> TokenSet:
        fetched.append(1)
        raise TokenError("invalid_client", "nope")

    auth = ServiceAccountAuth(refused)
    before = len(fetched)
    for _ in range(5):
        with pytest.raises(TokenError):
            auth.token()
    assert len(fetched) - before == 1, "a failure is reported to callers for a moment"
    assert json.dumps(repr(auth))
