"""ID tokens: a real login (code + PKCE, driven over HTTP) and every forgery the adapter refuses.

The test server signs with a key this module made, so tokens with bad claims can be forged with
a valid signature: each refusal below is the claim check's, not a signature failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapter import ValidationError
from adapter.jose import b64url, encode_header, make_signer, sign_compact
from adapter.protocol.client import AsyncOIDCClient, OIDCClient
from adapter.protocol.provider import Provider
from tests.idp_server import IdentityServer
from tests.web_client import signing_key

SECRET = "web-client-secret-" + "w" * 40
CALLBACK = "http://127.0.0.1:9/callback"  # never contacted: the code is read from the redirect
LOGGED_OUT = "http://127.0.0.1:9/logged-out"


@dataclass
class Setup:
    idp: IdentityServer
    config: Path
    server_key: rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("id-tokens")
    server_key, jwk = signing_key()
    web = {
        "client_id": "web",
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [LOGGED_OUT],
    }
    with IdentityServer([web], tmp_dir=directory, jwks={"keys": [jwk]}) as idp:
        config = directory / "web.toml"
        config.write_text(
            f'issuer = "{idp.issuer}"\nclient-id = "web"\n'
            f'[credentials]\nmethod = "client_secret_basic"\nsecret = "{SECRET}"\n'
        )
        yield Setup(idp, config, server_key)


def sign_in(url: str, login: str = "alice") -> str:
    """Log in and consent on the server's development pages; return the callback URL."""
    with httpx.Client(timeout=10) as browser:
        response = browser.get(url)
        for _ in range(10):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if location.startswith(CALLBACK):
                    return location
                response = browser.get(location)
                continue
            action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
            assert action, f"no form on {response.url}: {response.text[:300]}"
            prompt = "login" if 'name="login"' in response.text else "consent"
            fields = {"prompt": prompt, "login": login, "password": "any"}
            response = browser.post(urljoin(str(response.url), action.group(1)), data=fields)
    raise AssertionError("the login did not come back to the callback")


def test_real_login_code_exchange_id_token_refresh_and_logout(setup: Setup) -> None:
    with OIDCClient(setup.config) as oidc:
        login = oidc.login_request(CALLBACK, scope="openid profile email")
        callback = parse_qs(urlsplit(sign_in(login.url)).query)
        assert callback["state"] == [login.state]
        tokens = oidc.exchange_code(callback["code"][0], CALLBACK, login.code_verifier)
        assert tokens.id_token is not None
        assert tokens.refresh_token is not None
        claims = oidc.validate_id_token(tokens.id_token, nonce=login.nonce)
        assert claims["sub"] == "alice"
        assert claims["nonce"] == login.nonce
        refreshed = oidc.refresh(tokens.refresh_token)
        assert refreshed.access_token != tokens.access_token
        logout = oidc.end_session_url(tokens.id_token, LOGGED_OUT, state="s1")
    query = parse_qs(urlsplit(logout).query)
    assert logout.startswith(setup.idp.metadata["end_session_endpoint"])
    assert query["id_token_hint"] == [tokens.id_token]
    assert query["post_logout_redirect_uri"] == [LOGGED_OUT]


def test_a_code_without_its_pkce_verifier_is_refused(setup: Setup) -> None:
    from adapter import TokenError

    with OIDCClient(setup.config) as oidc:
        login = oidc.login_request(CALLBACK)
        code = parse_qs(urlsplit(sign_in(login.url)).query)["code"][0]
        with pytest.raises(TokenError) as raised:
            oidc.exchange_code(code, CALLBACK, "a" * 64)
    assert raised.value.error == "invalid_grant"


# --- forged ID tokens -------------------------------------------------------------------------


def forge(setup: Setup, header: dict[str, Any] | None = None, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": setup.idp.issuer,
        "aud": "web",
        "sub": "mallory",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-123",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = header or {"alg": "RS256", "kid": "server-1"}
    return sign_compact(encode_header(header), claims, make_signer("RS256", setup.server_key))


@pytest.fixture
def oidc(setup: Setup) -> Iterator[OIDCClient]:
    with OIDCClient(setup.config) as client:
        yield client


def test_a_well_signed_token_with_good_claims_is_accepted(setup: Setup, oidc: OIDCClient) -> None:
    assert oidc.validate_id_token(forge(setup), nonce="n-123")["sub"] == "mallory"


def test_alg_none(setup: Setup, oidc: OIDCClient) -> None:
    header = encode_header({"alg": "none", "kid": "server-1"}).decode()
    payload = forge(setup).split(".")[1]
    with pytest.raises(ValidationError, match="'none' is not accepted"):
        oidc.validate_id_token(f"{header}{payload}.", nonce="n-123")


def test_hs256_signed_with_the_servers_public_key(setup: Setup, oidc: OIDCClient) -> None:
    public_pem = setup.server_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    header = encode_header({"alg": "HS256", "kid": "server-1"})
    signing_input = header + forge(setup).split(".")[1].encode()
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + b64url(signature).encode()).decode()
    with pytest.raises(ValidationError, match="'HS256' is not accepted"):
        oidc.validate_id_token(forged, nonce="n-123")


def test_wrong_issuer(setup: Setup, oidc: OIDCClient) -> None:
    with pytest.raises(ValidationError, match="issuer"):
        oidc.validate_id_token(forge(setup, iss="https://evil.example.com"), nonce="n-123")


def test_wrong_audience(setup: Setup, oidc: OIDCClient) -> None:
    with pytest.raises(ValidationError, match="audience"):
        oidc.validate_id_token(forge(setup, aud="another-client"), nonce="n-123")


def test_expired(setup: Setup, oidc: OIDCClient) -> None:
    past = int(time.time()) - 3600
    with pytest.raises(ValidationError, match="expired"):
        oidc.validate_id_token(forge(setup, iat=past - 300, exp=past), nonce="n-123")


def test_issued_in_the_future_beyond_leeway(setup: Setup, oidc: OIDCClient) -> None:
    future = int(time.time()) + oidc.config.clock_skew + 120
    with pytest.raises(ValidationError, match="future"):
        oidc.validate_id_token(forge(setup, iat=future, exp=future + 300), nonce="n-123")


def test_wrong_nonce(setup: Setup, oidc: OIDCClient) -> None:
    with pytest.raises(ValidationError, match="nonce"):
        oidc.validate_id_token(forge(setup, nonce="n-999"), nonce="n-123")


def test_unknown_kid_after_one_refetch(setup: Setup, oidc: OIDCClient) -> None:
    """Refetched once per min-time-between-jwks-requests (10 s), measured on a test clock."""
    clock = [1000.0]
    oidc.provider = Provider(oidc.config.issuer, min_refetch_interval=10, clock=lambda: clock[0])
    oidc.validate_id_token(forge(setup), nonce="n-123")  # the server's keys are now cached
    assert oidc.provider.jwks_fetches == 1
    clock[0] += 11
    with pytest.raises(ValidationError, match="unknown key"):
        oidc.validate_id_token(forge(setup, header={"alg": "RS256", "kid": "k-x"}), "n-123")
    assert oidc.provider.jwks_fetches == 2, "an unknown kid triggers exactly one refetch"
    clock[0] += 5
    with pytest.raises(ValidationError, match="unknown key"):
        oidc.validate_id_token(forge(setup, header={"alg": "RS256", "kid": "k-y"}), "n-123")
    assert oidc.provider.jwks_fetches == 2, "no second refetch within the minimum interval"
    clock[0] += 6
    with pytest.raises(ValidationError, match="unknown key"):
        oidc.validate_id_token(forge(setup, header={"alg": "RS256", "kid": "k-z"}), "n-123")
    assert oidc.provider.jwks_fetches == 3


def test_async_validation_matches(setup: Setup) -> None:
    async def main() -> dict[str, Any]:
        async with AsyncOIDCClient(setup.config) as oidc:
            with pytest.raises(ValidationError, match="audience"):
                await oidc.validate_id_token(forge(setup, aud="x"), nonce="n-123")
            return await oidc.validate_id_token(forge(setup), nonce="n-123")

    assert asyncio.run(main())["sub"] == "mallory"


def test_tokens_stay_out_of_error_messages(setup: Setup, oidc: OIDCClient) -> None:
    token = forge(setup, aud="x")
    with pytest.raises(ValidationError) as raised:
        oidc.validate_id_token(token, nonce="n-123")
    assert token not in str(raised.value)
    assert json.dumps(str(raised.value)).count(".") < 5


def test_concurrent_validations_fetch_the_server_keys_once(setup: Setup) -> None:
    async def main() -> int:
        async with AsyncOIDCClient(setup.config) as oidc:
            tokens = [forge(setup, sub=f"user-{i}") for i in range(30)]
            results = await asyncio.gather(
                *(oidc.validate_id_token(token, nonce="n-123") for token in tokens)
            )
            assert {r["sub"] for r in results} == {f"user-{i}" for i in range(30)}
            return oidc.provider.jwks_fetches

    assert asyncio.run(main()) == 1


def test_pushed_authorization_request_logs_in(setup: Setup) -> None:
    with OIDCClient(setup.config) as oidc:
        login = oidc.login_request(CALLBACK, pushed=True)
        query = parse_qs(urlsplit(login.url).query)
        assert set(query) == {"client_id", "request_uri"}, (
            "only a reference travels via the browser"
        )
        callback = parse_qs(urlsplit(sign_in(login.url)).query)
        assert callback["state"] == [login.state]
        tokens = oidc.exchange_code(callback["code"][0], CALLBACK, login.code_verifier)
        assert tokens.id_token is not None
        assert oidc.validate_id_token(tokens.id_token, nonce=login.nonce)["sub"] == "alice"


def test_an_id_token_is_not_an_access_token(setup: Setup, oidc: OIDCClient) -> None:
    with pytest.raises(ValidationError, match="not an access token"):
        oidc.validate_access_token(forge(setup))
