"""Token rules: header checks, signature, claims, the validated-token cache, TokenSet."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapter.errors import ProviderError, ValidationError
from adapter.jose import b64url, encode_header, make_signer, sign_compact
from adapter.protocol.tokens import (
    ClaimRules,
    TokenSet,
    ValidatedTokenCache,
    check_claims,
    parse_signed,
    verified_claims,
)

ISSUER = "https://sso.example.com/realms/demo"
NOW = 1_800_000_000.0
SERVER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ALGS = ("RS256", "ES256")


def token(
    claims: dict[str, Any], key: Any = SERVER_KEY, header: dict[str, Any] | None = None
) -> str:
    header = header or {"alg": "RS256", "kid": "k1"}
    return sign_compact(encode_header(header), claims, make_signer(header["alg"], key))


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": "app", "sub": "u1", "iat": NOW, "exp": NOW + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_valid_token_verifies() -> None:
    signed = parse_signed(token(claims()), ALGS)
    assert verified_claims(signed, [SERVER_KEY.public_key()])["sub"] == "u1"


def test_alg_none_is_refused() -> None:
    unsigned = encode_header({"alg": "none"}).decode() + b64url(json.dumps(claims()).encode()) + "."
    with pytest.raises(ValidationError, match="'none' is not accepted"):
        parse_signed(unsigned, ALGS)


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """The classic key-confusion forgery: the server's public key used as an HMAC secret."""
    public_pem = SERVER_KEY.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    header = encode_header({"alg": "HS256", "kid": "k1"})
    signing_input = header + b64url(json.dumps(claims()).encode()).encode()
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + b64url(signature).encode()).decode()
    with pytest.raises(ValidationError, match="'HS256' is not accepted"):
        parse_signed(forged, ALGS)


def test_wrong_key_and_tampered_payload_are_refused() -> None:
    with pytest.raises(ValidationError, match="signature is invalid"):
        verified_claims(
            parse_signed(token(claims(), key=OTHER_KEY), ALGS), [SERVER_KEY.public_key()]
        )
    header, _, signature = token(claims()).split(".")
    tampered = ".".join([header, b64url(json.dumps(claims(sub="admin")).encode()), signature])
    with pytest.raises(ValidationError, match="signature is invalid"):
        verified_claims(parse_signed(tampered, ALGS), [SERVER_KEY.public_key()])


def test_key_type_must_match_the_algorithm() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    signed = parse_signed(token(claims(), header={"alg": "RS256"}), ALGS)
    with pytest.raises(ValidationError, match="signature is invalid"):
        verified_claims(signed, [ec_key.public_key()])


def test_unknown_kid_is_reported() -> None:
    with pytest.raises(ValidationError, match="unknown key"):
        verified_claims(parse_signed(token(claims()), ALGS), [])


@pytest.mark.parametrize(
    "text",
    ["", "a.b", "a.b.c.d", "!!.e30.", base64.urlsafe_b64encode(b"[1]").decode() + ".e30.AA"],
)
def test_malformed_tokens(text: str) -> None:
    with pytest.raises(ValidationError, match="malformed token"):
        parse_signed(text, ALGS)


def test_crit_header_is_refused() -> None:
    with pytest.raises(ValidationError, match="critical"):
        parse_signed(token(claims(), header={"alg": "RS256", "crit": ["x"], "x": 1}), ALGS)


RULES = ClaimRules(ISSUER, audience="app", leeway=30, nonce="n-1", check_azp=True)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"aud": "other-app"}, "audience"),
        ({"aud": ["app", "other"]}, "azp"),
        ({"aud": ["app", "other"], "azp": "other"}, "azp"),
        ({"azp": "other"}, "azp"),
        ({"exp": NOW - 31}, "expired"),
        ({"exp": None}, "no exp"),
        ({"exp": "soon"}, "not a number"),
        ({"iat": NOW + 31}, "future"),
        ({"nbf": NOW + 31}, "not yet valid"),
        ({"nonce": "n-2"}, "nonce"),
        ({"nonce": None}, "nonce"),
    ],
)
def test_claim_rules_refuse(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        check_claims(claims(**{"nonce": "n-1", **overrides}), RULES, now=NOW)


def test_claim_rules_accept_within_leeway_and_with_azp() -> None:
    check_claims(claims(nonce="n-1", exp=NOW - 29, iat=NOW + 29), RULES, now=NOW)
    check_claims(claims(nonce="n-1", aud=["app", "api"], azp="app"), RULES, now=NOW)


def test_cache_returns_until_exp_and_stays_bounded() -> None:
    cache = ValidatedTokenCache(max_entries=2)
    cache.put("t1", {"exp": NOW + 10})
    assert cache.get("t1", now=NOW) == {"exp": NOW + 10}
    assert cache.get("t1", now=NOW + 10) is None, "dropped at exp"
    for name in ("a", "b", "c"):
        cache.put(name, {"exp": NOW + 10})
    assert len(cache) == 2
    assert cache.get("a", now=NOW) is None, "least recently stored goes first"


def test_token_set_from_response_and_repr() -> None:
    tokens = TokenSet.from_response(
        {
            "access_token": "AT-secret",
            "expires_in": 60,
            "refresh_token": "RT-secret",
            "token_type": "Bearer",
        },
        now=NOW,
    )
    assert tokens.expires_at == NOW + 60
    assert tokens.expires_in(now=NOW + 20) == 40
    assert "secret" not in repr(tokens)
    with pytest.raises(ProviderError, match="no access_token"):
        TokenSet.from_response({"token_type": "Bearer"})
