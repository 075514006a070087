"""DPoP proofs (RFC 9449): made here they verify; each refusal of §4.3 has its case; keys
serialise, have RFC 7638 thumbprints and never show their material; joserfc interoperates."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, OKPKey

from adapter.errors import ValidationError
from adapter.jose import b64url, encode_header, make_hmac_signer, make_signer, sign_compact
from adapter.protocol.dpop import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_AGE,
    CheckedProof,
    DPoPKey,
    DPoPProofError,
    UseDPoPNonce,
    access_token_hash,
    check_proof,
    jwk_thumbprint,
    make_proof,
    proof_key,
    www_authenticate,
)

NOW = 1_800_000_000.0
URL = "https://rs.example.com/api/orders"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
ES256 = DPoPKey.generate("ES256")
ED25519 = DPoPKey.generate("EdDSA")
OTHER = DPoPKey.generate("ES256")


def check(proof: str | list[str], **options: Any) -> CheckedProof:
    """check_proof for a POST to URL at NOW, with ``options`` overriding."""
    arguments: dict[str, Any] = {"method": "POST", "url": URL, "now": NOW, **options}
    return check_proof(proof, **arguments)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"jti": "jti-1", "htm": "POST", "htu": URL, "iat": int(NOW)}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def forged(
    payload: dict[str, Any],
    key: DPoPKey = ES256,
    *,
    signer: Any = None,
    **header: Any,
) -> str:
    """A proof written by hand: ``header`` overrides typ/alg/jwk (None removes one), signed by
    ``key`` unless ``signer`` is given."""
    fields: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk}
    fields.update(header)
    fields = {name: value for name, value in fields.items() if value is not None}
    sign = signer or make_signer(key.alg, key._key)
    return sign_compact(encode_header(fields), payload, sign)


# --- made here, verified here ----------------------------------------------------------------


@pytest.mark.parametrize("key", [ES256, ED25519], ids=["ES256", "EdDSA"])
def test_a_proof_made_here_verifies(key: DPoPKey) -> None:
    proof = make_proof(key, "POST", URL, access_token=TOKEN, nonce="n-1", now=NOW)
    checked = check(proof, access_token=TOKEN, cnf_jkt=key.jkt, nonce="n-1")
    assert checked.jkt == key.jkt
    assert checked.alg == key.alg
    assert checked.iat == int(NOW)
    assert checked.replay_until == int(NOW) + DEFAULT_MAX_AGE + DEFAULT_LEEWAY
    assert re.fullmatch(r"[0-9a-f]{32}", checked.jti)  # 128 random bits


def test_the_proof_has_the_rfc_9449_header_and_claims() -> None:
    proof = make_proof(ES256, "GET", URL + "?page=2#top", access_token=TOKEN, now=NOW)
    header_part, payload_part, _ = proof.split(".")
    header = json.loads(_decode(header_part))
    payload = json.loads(_decode(payload_part))
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": ES256.public_jwk}
    assert set(payload) == {"jti", "htm", "htu", "iat", "ath"}
    assert payload["htm"] == "GET"
    assert payload["htu"] == URL  # without query and fragment (RFC 9449 §4.2)
    assert payload["iat"] == int(NOW)
    assert payload["ath"] == b64url(hashlib.sha256(TOKEN.encode()).digest())


def test_strings_in_claims_are_json_escaped() -> None:
    proof = make_proof(ES256, "POST", 'https://rs.example.com/a"b\\c', nonce='n"\n\u00e9', now=NOW)
    payload = json.loads(_decode(proof.split(".")[1]))
    assert payload["htu"] == 'https://rs.example.com/a"b\\c'
    assert payload["nonce"] == 'n"\n\u00e9'


def test_every_proof_has_a_new_jti() -> None:
    jtis = {
        json.loads(_decode(make_proof(ES256, "GET", URL).split(".")[1]))["jti"] for _ in range(600)
    }
    assert len(jtis) == 600


def test_threads_never_share_a_jti() -> None:
    def jtis(_: int) -> list[str]:
        return [_decode_claims(make_proof(ES256, "GET", URL))["jti"] for _ in range(300)]

    with ThreadPoolExecutor(4) as pool:
        made = [jti for batch in pool.map(jtis, range(4)) for jti in batch]
    assert len(set(made)) == len(made) == 1200


def test_the_access_token_hash_follows_a_changed_token() -> None:
    key = DPoPKey.generate()
    for token in ("first-token", "second-token", "first-token"):
        proof = make_proof(key, "GET", URL, access_token=token, now=NOW)
        check(proof, method="GET", access_token=token)
        assert key.access_token_hash(token) == access_token_hash(token)


@pytest.mark.parametrize(
    ("private_key", "alg"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ec.generate_private_key(ec.SECP521R1()), "ES512"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS256"),
    ],
    ids=["P-256", "P-384", "P-521", "Ed25519", "RSA-2048"],
)
def test_existing_keys_sign_with_their_algorithm(private_key: Any, alg: str) -> None:
    key = DPoPKey(private_key)
    assert key.alg == alg
    assert check(make_proof(key, "POST", URL, now=NOW)).jkt == key.jkt


@pytest.mark.parametrize(
    "private_key",
    [
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 - refused
        ec.generate_private_key(ec.SECP256K1()),
    ],
    ids=["RSA-1024", "secp256k1"],
)
def test_unusable_keys_are_refused(private_key: Any) -> None:
    with pytest.raises(ValueError, match="a DPoP key is"):
        DPoPKey(private_key)


def test_generate_names_the_algorithms_it_knows() -> None:
    with pytest.raises(ValueError, match="ES256, EdDSA or PS256"):
        DPoPKey.generate("HS256")


# --- refusals (RFC 9449 §4.3) -----------------------------------------------------------------


def refused(proof: str | list[str], match: str, **options: Any) -> DPoPProofError:
    with pytest.raises(DPoPProofError, match=match) as caught:
        check(proof, **options)
    assert caught.value.error == "invalid_dpop_proof"
    assert isinstance(caught.value, ValidationError)
    return caught.value


def test_wrong_typ() -> None:
    refused(forged(claims(), typ="jwt"), "typ")
    refused(forged(claims(), typ=None), "typ")


def test_alg_none() -> None:
    fields = {"typ": "dpop+jwt", "alg": "none", "jwk": ES256.public_jwk}
    proof = sign_compact(encode_header(fields), claims(), lambda data: b"")
    refused(proof, "algorithm")


def test_hs256_even_when_the_caller_lists_it() -> None:
    proof = forged(claims(), alg="HS256", signer=make_hmac_signer("HS256", b"k" * 32))
    refused(proof, "algorithm")
    refused(proof, "algorithm", algorithms=("HS256", "ES256"))


def test_alg_outside_the_accepted_list() -> None:
    refused(make_proof(ED25519, "POST", URL, now=NOW), "algorithm", algorithms=("ES256",))


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
def test_private_jwk_member(member: str) -> None:
    jwk = {**ES256.public_jwk, member: "AQAB"}
    refused(forged(claims(), jwk=jwk), "private key material")


def test_missing_or_unusable_jwk() -> None:
    refused(forged(claims(), jwk=None), "no jwk")
    refused(forged(claims(), jwk={"kty": "oct", "k": "c2VjcmV0"}), "jwk")
    refused(forged(claims(), jwk={**ES256.public_jwk, "x": ES256.public_jwk["y"]}), "usable")
    jwk = {**ES256.public_jwk, "x": ES256.public_jwk["x"][1:]}  # not the full coordinate
    refused(forged(claims(), jwk=jwk), "usable")
    refused(forged(claims(), jwk={**ES256.public_jwk, "alg": "ES384"}), "another algorithm")


def test_small_rsa_jwk() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused
    numbers = small.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    proof = sign_compact(
        encode_header({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}),
        claims(),
        make_signer("RS256", small),
    )
    refused(proof, "usable")


def test_tampered_payload() -> None:
    header, _, signature = make_proof(ES256, "POST", URL, now=NOW).split(".")
    payload = b64url(json.dumps(claims(htm="GET")).encode())
    refused(f"{header}.{payload}.{signature}", "signature")


def test_signed_by_another_key_than_its_jwk() -> None:
    proof = forged(claims(), ES256, signer=make_signer("ES256", OTHER._key))
    refused(proof, "signature")


def test_jwk_of_another_key_type_than_alg() -> None:
    refused(forged(claims(), ED25519, alg="ES256", signer=ED25519._sign), "signature")


def test_crit_header() -> None:
    refused(forged(claims(), crit=["exp"], exp=1), "critical")


def test_not_one_compact_jws() -> None:
    proof = make_proof(ES256, "POST", URL, now=NOW)
    refused(proof + "." + proof.split(".")[2], "compact JWS")
    refused("not a jws", "compact JWS")
    refused([proof, proof], "exactly one")
    refused([], "exactly one")
    assert check([proof]).jkt == ES256.jkt


def test_huge_proof() -> None:
    refused(forged(claims(padding="x" * 10_000)), "acceptable size")
    jwk = {**ES256.public_jwk, "x5c": ["A" * 3000]}
    refused(forged(claims(), jwk=jwk), "acceptable size")


def test_payload_not_an_object() -> None:
    fields = {"typ": "dpop+jwt", "alg": "ES256", "jwk": ES256.public_jwk}
    proof = sign_compact(encode_header(fields), {}, ES256._sign)  # an object without claims
    refused(proof, "jti")
    head = encode_header(fields)
    signing_input = head + b64url(b"[1, 2]").encode()
    proof = (signing_input + b"." + b64url(ES256._sign(signing_input)).encode()).decode()
    refused(proof, "not a JSON object")


def test_htm_mismatch() -> None:
    refused(make_proof(ES256, "GET", URL, now=NOW), "method")
    refused(make_proof(ES256, "post", URL, now=NOW), "method")  # methods are case-sensitive


@pytest.mark.parametrize(
    "htu",
    [
        "https://rs.example.com/api/other",
        "https://other.example.com/api/orders",
        "http://rs.example.com/api/orders",
        "https://rs.example.com:8443/api/orders",
        "https://rs.example.com/api/orders/",
        "https://user@rs.example.com/api/orders",
        "/api/orders",
    ],
)
def test_htu_mismatch(htu: str) -> None:
    refused(forged(claims(htu=htu)), "URL")


def test_htu_missing_or_not_a_string() -> None:
    refused(forged(claims(htu=None)), "URL")
    refused(forged(claims(htu=["https://rs.example.com/api/orders"])), "URL")


@pytest.mark.parametrize(
    "htu",
    [
        URL,
        URL + "?page=2",
        URL + "#top",
        "HTTPS://RS.Example.COM:443/api/orders",
        "https://rs.example.com/api/%6frders",  # an unreserved character, percent-encoded
    ],
)
def test_htu_is_compared_after_normalisation_without_query(htu: str) -> None:
    check(forged(claims(htu=htu)))
    check(forged(claims(htu=htu)), url=URL + "?q=1&r=2#frag")


def test_htu_default_ports_and_root_path() -> None:
    check(forged(claims(htu="http://h.example:80")), url="http://h.example/")
    check(forged(claims(htu="https://[::1]:443/x")), url="https://[::1]/x")
    refused(forged(claims(htu="https://[::1]:8443/x")), "URL", url="https://[::1]/x")


def test_the_request_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        check(make_proof(ES256, "POST", URL, now=NOW), url="/api/orders")


def test_iat_ten_minutes_old() -> None:
    refused(make_proof(ES256, "POST", URL, now=NOW - 600), "too old")


def test_iat_in_the_future() -> None:
    refused(make_proof(ES256, "POST", URL, now=NOW + DEFAULT_LEEWAY + 5), "future")


def test_iat_within_the_window() -> None:
    check(make_proof(ES256, "POST", URL, now=NOW - DEFAULT_MAX_AGE - DEFAULT_LEEWAY))
    check(make_proof(ES256, "POST", URL, now=NOW + DEFAULT_LEEWAY))
    refused(make_proof(ES256, "POST", URL, now=NOW - 20), "too old", max_age=10, leeway=5)


@pytest.mark.parametrize("iat", [None, "1800000000", True])
def test_iat_unusable(iat: Any) -> None:
    refused(forged(claims(iat=iat)), "iat")


def test_iat_infinity_is_not_json() -> None:
    refused(forged(claims(iat=1e400)), "not a JSON object")  # strict JSON: no Infinity


@pytest.mark.parametrize("jti", [None, "", 42, "j" * 257])
def test_jti_missing_or_unusable(jti: Any) -> None:
    refused(forged(claims(jti=jti)), "jti")


def test_missing_ath_when_a_token_is_given() -> None:
    refused(make_proof(ES256, "POST", URL, now=NOW), "ath", access_token=TOKEN)


def test_wrong_ath() -> None:
    proof = make_proof(ES256, "POST", URL, access_token="another-token", now=NOW)
    refused(proof, "another access token", access_token=TOKEN)


def test_cnf_jkt_mismatch() -> None:
    proof = make_proof(ES256, "POST", URL, access_token=TOKEN, now=NOW)
    refused(proof, "bound to", access_token=TOKEN, cnf_jkt=OTHER.jkt)


@pytest.mark.parametrize("sent", [None, "old-nonce"])
def test_nonce_missing_or_wrong(sent: str | None) -> None:
    proof = make_proof(ES256, "POST", URL, nonce=sent, now=NOW)
    with pytest.raises(UseDPoPNonce) as caught:
        check(proof, nonce="current-nonce")
    assert caught.value.error == "use_dpop_nonce"
    assert isinstance(caught.value, DPoPProofError)


def test_nonce_one_of_several() -> None:
    proof = make_proof(ES256, "POST", URL, nonce="previous", now=NOW)
    check(proof, nonce=("current", "previous"))
    with pytest.raises(UseDPoPNonce):
        check(proof, nonce=frozenset({"current"}))


# --- keys ----------------------------------------------------------------------------------------


def test_thumbprint_of_the_rfc_7638_example() -> None:
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
            "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
            "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
            "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_checking_side_computes_the_same_thumbprint() -> None:
    jwk = {"kty": "RSA", "n": _RFC_7638_N, "e": "AQAB"}
    key, jkt = proof_key(jwk, "RS256")
    assert isinstance(key, rsa.RSAPublicKey)
    assert jkt == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES256", "ES512", "EdDSA", "PS256"])
def test_thumbprint_agrees_with_joserfc_and_the_checking_side(alg: str) -> None:
    key = DPoPKey.generate(alg)
    assert key.jkt == JWKRegistry.import_key(_joserfc_jwk(key)).thumbprint()
    assert key.jkt == jwk_thumbprint(key.public_jwk)
    assert proof_key(key.public_jwk, alg)[1] == key.jkt


def test_public_jwk_has_no_private_member() -> None:
    for key in (ES256, ED25519):
        assert set(key.public_jwk) <= {"kty", "crv", "x", "y"}
    key = DPoPKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert set(key.public_jwk) == {"kty", "n", "e"}


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA", "PS256"])
def test_serialisation_round_trip(alg: str) -> None:
    key = DPoPKey.generate(alg)
    for again in (DPoPKey.from_bytes(key.to_bytes()), DPoPKey.from_dict(key.to_dict())):
        assert (again.alg, again.jkt, again.public_jwk) == (key.alg, key.jkt, key.public_jwk)
        check(make_proof(again, "POST", URL, now=NOW), cnf_jkt=key.jkt)
    assert json.loads(json.dumps(key.to_dict())) == key.to_dict()


def test_serialised_es256_and_ed25519_keys_are_compact() -> None:
    assert len(ES256.to_bytes()) == len(b"ES256:") + 32
    assert len(ED25519.to_bytes()) == len(b"EdDSA:") + 32


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"ES256",
        b"ES256:" + b"\x00" * 32,
        b"ES256:" + b"\x01" * 31,
        b"HS256:" + b"\x01" * 32,
        b"PS256:" + b"\x30\x00",
        b"\xff\xfe:\x01",
    ],
)
def test_malformed_serialised_keys(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a serialised DPoP key") as caught:
        DPoPKey.from_bytes(data)
    assert "\\x01" not in str(caught.value)


def test_malformed_serialised_dicts() -> None:
    for data in ({}, {"alg": "ES256"}, {"alg": "ES256", "key": 7}, {"alg": "ES512", "key": "AQAB"}):
        with pytest.raises(ValueError, match="not a serialised DPoP key"):
            DPoPKey.from_dict(data)


@pytest.mark.parametrize("key", [ES256, ED25519], ids=["ES256", "EdDSA"])
def test_repr_and_str_show_no_key_material(key: DPoPKey) -> None:
    secret = key.to_dict()["key"]
    shown = repr(key) + str(key) + f"{key}"
    assert key.jkt in shown
    assert key.alg in shown
    for material in (
        secret,
        secret[:12],
        *(key.public_jwk[m] for m in ("x", "y") if m in key.public_jwk),
    ):
        assert material not in shown


def test_errors_show_no_proof_material() -> None:
    proof = make_proof(ES256, "POST", URL, access_token="other", nonce="n", now=NOW - 600)
    pieces = [*proof.split("."), ES256.public_jwk["x"], ES256.jkt, TOKEN, access_token_hash(TOKEN)]
    cases: list[dict[str, Any]] = [
        {},
        {"access_token": TOKEN},
        {"cnf_jkt": OTHER.jkt},
        {"nonce": "m"},
        {"method": "GET"},
    ]
    for options in cases:
        with pytest.raises(DPoPProofError) as caught:
            check(proof, **options)
        shown = str(caught.value) + repr(caught.value) + caught.value.description
        assert not any(piece in shown for piece in pieces)
        assert len(caught.value.description) < 80


# --- interoperability ---------------------------------------------------------------------------


def test_a_proof_made_with_joserfc_verifies() -> None:
    key = ECKey.generate_key("P-256")
    payload = json.dumps(
        {
            "jti": "e1j3V_bKic8-LAEB",
            "htm": "GET",
            "htu": URL + "?x=1",
            "iat": int(NOW),
            "ath": access_token_hash(TOKEN),
        }
    )
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    proof = jws.serialize_compact(header, payload, key, algorithms=["ES256"])
    checked = check(proof, method="GET", access_token=TOKEN, cnf_jkt=key.thumbprint())
    assert checked.jti == "e1j3V_bKic8-LAEB"


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # EdDSA, RFC 9864
def test_an_ed25519_proof_made_with_joserfc_verifies() -> None:
    key = OKPKey.generate_key("Ed25519")
    payload = json.dumps({"jti": "j", "htm": "POST", "htu": URL, "iat": int(NOW)})
    header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.as_dict(private=False)}
    proof = jws.serialize_compact(header, payload, key, algorithms=["EdDSA"])
    assert check(proof).jkt == key.thumbprint()


@pytest.mark.parametrize("key", [ES256, ED25519], ids=["ES256", "EdDSA"])
def test_joserfc_verifies_a_proof_made_here(key: DPoPKey) -> None:
    proof = make_proof(key, "POST", URL, access_token=TOKEN, now=NOW)
    public = (ECKey if key.alg == "ES256" else OKPKey).import_key(_joserfc_jwk(key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA, deprecated by RFC 9864
        verified = jws.deserialize_compact(proof, public, algorithms=[key.alg])
    assert verified.protected["typ"] == "dpop+jwt"
    assert json.loads(verified.payload)["ath"] == access_token_hash(TOKEN)


# --- WWW-Authenticate ---------------------------------------------------------------------------


def test_www_authenticate_challenge() -> None:
    assert www_authenticate(("ES256", "EdDSA")) == 'DPoP algs="ES256 EdDSA"'
    assert (
        www_authenticate(("ES256",), "invalid_dpop_proof", "the proof is too old (iat)")
        == 'DPoP error="invalid_dpop_proof", error_description="the proof is too old (iat)", '
        'algs="ES256"'
    )
    assert www_authenticate(()) == "DPoP"


def test_www_authenticate_quotes_safely() -> None:
    header = www_authenticate(('ES256", x="y', "EdDSA"), 'bad"error', 'say "hi"\r\nX-Evil: 1 \\ é')
    assert header == (
        'DPoP error="bad?error", error_description="say ?hi???X-Evil: 1 ? ?", algs="EdDSA"'
    )
    assert len(www_authenticate((), "e", "d" * 1000)) < 300


def test_errors_describe_themselves_for_the_challenge() -> None:
    error = refused(make_proof(ES256, "POST", URL, now=NOW - 600), "too old")
    assert www_authenticate(("ES256",), error.error, error.description) == (
        'DPoP error="invalid_dpop_proof", error_description="the proof is too old (iat)", '
        'algs="ES256"'
    )


# --- helpers -------------------------------------------------------------------------------------

_RFC_7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
    "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
    "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def _decode_claims(proof: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(_decode(proof.split(".")[1]))
    return payload


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _joserfc_jwk(key: DPoPKey) -> dict[str, str | list[str]]:
    return dict(key.public_jwk)


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def test_the_proof_memory_refuses_a_replay_and_confines_a_flooding_key() -> None:
    """A proof used twice inside its window is a replay; one key filling its share is refused
    (None: 503) while another key is still served; expired proofs make room again."""
    from adapter.protocol.dpop import ProofMemory

    memory = ProofMemory(max_entries=32)  # two per key
    assert memory.first_use("k1:a", until=100.0, now=10.0) is True
    assert memory.first_use("k1:a", until=100.0, now=20.0) is False
    assert memory.first_use("k1:a", until=100.0, now=100.0) is False  # the edge still counts
    assert memory.first_use("k1:b", until=100.0, now=20.0) is True
    assert memory.first_use("k1:c", until=100.0, now=20.0) is None  # k1's share is full
    assert memory.first_use("k2:a", until=100.0, now=20.0) is True  # k2 is served
    assert memory.first_use("k1:c", until=200.0, now=101.0) is True  # k1's proofs expired
