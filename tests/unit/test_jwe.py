"""adapter.protocol.jwe: encrypted tokens decrypted to the signed token inside, or refused.

Tokens are encrypted here with joserfc, for every key management and content encryption
algorithm the adapter accepts (the real identity server's, panva's jose, in
tests/integration/test_encrypted_id_tokens.py); each refusal has its own test and says why in
a few words, never with key material.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey

from adapter.config.key_options import (
    CONTENT_ENCRYPTION_ALGORITHMS,
    EC_KEY_MANAGEMENT,
    KEY_MANAGEMENT_ALGORITHMS,
    RSA_KEY_MANAGEMENT,
    KeyState,
)
from adapter.errors import ValidationError
from adapter.jose import b64url, encode_header, make_signer, sign_compact
from adapter.keys.keyring import EncryptionKey
from adapter.protocol.jwe import Expected, decrypt_compact, is_jwe, signed_token

SERVER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {
    "P-256": ec.generate_private_key(ec.SECP256R1()),
    "P-384": ec.generate_private_key(ec.SECP384R1()),
    "P-521": ec.generate_private_key(ec.SECP521R1()),
}
INNER = sign_compact(
    encode_header({"alg": "RS256", "kid": "server-1"}),
    {"iss": "https://idp.example", "sub": "alice"},
    make_signer("RS256", SERVER_KEY),
)


def encoded(value: object) -> str:
    return b64url(json.dumps(value).encode())


def enc_key(alg: str, kid: str | None = None, **overrides: Any) -> EncryptionKey:
    private = RSA_KEY if alg in RSA_KEY_MANAGEMENT else EC_KEYS["P-256"]
    values: dict[str, Any] = {"kid": kid or f"k-{alg}", "alg": alg, "private_key": private}
    values.update(overrides)
    return EncryptionKey(**values)


def encrypt(
    key: EncryptionKey,
    enc: str = "A256GCM",
    plaintext: str | bytes = INNER,
    header: dict[str, Any] | None = None,
    kid: bool = True,
) -> str:
    public = key.private_key.public_key()
    jose_key = (
        RSAKey.import_key(public) if key.alg in RSA_KEY_MANAGEMENT else ECKey.import_key(public)
    )  # type: ignore[arg-type]
    protected = {"alg": key.alg, "enc": enc, "cty": "JWT", **(header or {})}
    if kid:
        protected["kid"] = key.kid
    registry = jwe.JWERegistry(algorithms=[key.alg, enc], strict_check_header=False)
    return jwe.encrypt_compact(protected, plaintext, jose_key, registry=registry)


def expecting(*keys: EncryptionKey, required: bool = False, **overrides: Any) -> Expected:
    values: dict[str, Any] = {
        "keys": keys,
        "algs": tuple(dict.fromkeys(k.alg for k in keys)),
        "required": required,
    }
    values.update(overrides)
    return Expected(**values)


@pytest.mark.parametrize("enc", CONTENT_ENCRYPTION_ALGORITHMS)
@pytest.mark.parametrize("alg", KEY_MANAGEMENT_ALGORITHMS)
def test_every_accepted_algorithm_pair_decrypts_to_the_signed_token(alg: str, enc: str) -> None:
    key = enc_key(alg)
    assert signed_token(encrypt(key, enc), expecting(key)) == INNER


@pytest.mark.parametrize("curve", sorted(EC_KEYS))
@pytest.mark.parametrize("alg", EC_KEY_MANAGEMENT)
def test_ecdh_es_on_every_curve(alg: str, curve: str) -> None:
    key = enc_key(alg, private_key=EC_KEYS[curve])
    assert signed_token(encrypt(key, "A128GCM"), expecting(key)) == INNER


@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "ECDH-ES"])
def test_claims_replicated_in_the_header_are_accepted(alg: str) -> None:
    """RFC 7519 §5.3: oidc-provider puts iss and aud in the JWE header."""
    key = enc_key(alg)
    extra = {"iss": "https://idp.example", "aud": "app"}
    assert signed_token(encrypt(key, "A128CBC-HS256", header=extra), expecting(key)) == INNER
    assert signed_token(encrypt(key, "A256GCM", header=extra), expecting(key)) == INNER


def test_a_plain_signed_token_passes_through_unless_encryption_is_required() -> None:
    key = enc_key("RSA-OAEP-256")
    assert signed_token(INNER, expecting(key)) == INNER
    assert signed_token(INNER, Expected()) == INNER
    with pytest.raises(ValidationError, match="not encrypted, and id-token-encrypted-response-alg"):
        signed_token(INNER, expecting(key, required=True))


def test_a_jwe_without_any_encryption_key_is_refused() -> None:
    token = encrypt(enc_key("RSA-OAEP-256"))
    with pytest.raises(ValidationError, match="no encryption key is configured"):
        signed_token(token, Expected())


@pytest.mark.filterwarnings("ignore:JWE algorithm")  # joserfc, making the token
def test_rsa1_5_is_refused_as_a_padding_oracle() -> None:
    key = enc_key("RSA-OAEP-256")
    public = RSAKey.import_key(RSA_KEY.public_key())
    token = jwe.encrypt_compact(
        {"alg": "RSA1_5", "enc": "A128CBC-HS256", "kid": key.kid},
        INNER,
        public,
        algorithms=["RSA1_5", "A128CBC-HS256"],
    )
    with pytest.raises(ValidationError, match="RSA1_5 is a padding oracle"):
        signed_token(token, expecting(key, algs=("RSA-OAEP-256", "RSA1_5")))


def test_a_key_management_algorithm_not_expected_is_refused() -> None:
    key, configured = enc_key("RSA-OAEP"), enc_key("RSA-OAEP-256", kid="other")
    with pytest.raises(ValidationError, match="key management RSA-OAEP is not expected"):
        signed_token(encrypt(key), expecting(key, configured, algs=("RSA-OAEP-256",)))


def test_dir_and_key_wrapping_without_a_client_key_are_refused() -> None:
    header = encoded({"alg": "dir", "enc": "A256GCM"})
    token = f"{header}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(ValidationError, match="key management dir is not expected"):
        signed_token(token, expecting(enc_key("RSA-OAEP-256"), algs=("RSA-OAEP-256", "dir")))


def test_a_content_encryption_not_expected_is_refused() -> None:
    key = enc_key("RSA-OAEP-256")
    with pytest.raises(ValidationError, match="content encryption A128GCM is not expected"):
        signed_token(encrypt(key, "A128GCM"), expecting(key, encs=("A256GCM",)))


def test_a_token_encrypted_to_an_unknown_kid_is_refused() -> None:
    stranger = enc_key("RSA-OAEP-256", kid="not-ours", private_key=OTHER_RSA_KEY)
    with pytest.raises(ValidationError, match=r"encrypted to an unknown key \(kid not-ours\)"):
        signed_token(encrypt(stranger), expecting(enc_key("RSA-OAEP-256")))


def test_a_token_encrypted_to_another_key_without_kid_is_refused() -> None:
    stranger = enc_key("RSA-OAEP-256", private_key=OTHER_RSA_KEY)
    with pytest.raises(ValidationError, match="cannot be decrypted with the client's keys"):
        signed_token(encrypt(stranger, kid=False), expecting(enc_key("RSA-OAEP-256")))


def test_an_alg_no_client_key_has_is_refused() -> None:
    ours = enc_key("RSA-OAEP-256")
    token = encrypt(enc_key("RSA-OAEP"), kid=False)
    with pytest.raises(ValidationError, match="encrypted with RSA-OAEP, and no client key has it"):
        signed_token(token, expecting(ours, algs=("RSA-OAEP-256", "RSA-OAEP")))


def test_a_kid_used_with_another_alg_is_refused() -> None:
    ours = enc_key("RSA-OAEP-256", kid="k1")
    token = encrypt(enc_key("RSA-OAEP", kid="k1"))
    with pytest.raises(ValidationError, match="with RSA-OAEP to key k1, which is for RSA-OAEP-256"):
        signed_token(token, expecting(ours, algs=("RSA-OAEP-256", "RSA-OAEP")))


def test_without_kid_each_key_with_the_alg_is_tried_active_first() -> None:
    old = enc_key("RSA-OAEP-256", kid="old", state=KeyState.RETIRED)
    new = enc_key("RSA-OAEP-256", kid="new", private_key=OTHER_RSA_KEY)
    expected = expecting(old, new)
    assert signed_token(encrypt(old, kid=False), expected) == INNER
    assert signed_token(encrypt(new, kid=False), expected) == INNER


@pytest.mark.parametrize("state", list(KeyState))
def test_keys_decrypt_in_every_state(state: KeyState) -> None:
    key = enc_key("ECDH-ES+A256KW", state=state)
    assert signed_token(encrypt(key), expecting(key)) == INNER


def test_an_unsigned_inner_token_is_refused() -> None:
    key = enc_key("RSA-OAEP-256")
    unsigned = f"{encoded({'alg': 'none'})}.{INNER.split('.')[1]}."
    with pytest.raises(ValidationError, match=r"unsigned token \(alg none\)"):
        signed_token(encrypt(key, plaintext=unsigned), expecting(key))
    signatureless = f"{INNER.rpartition('.')[0]}."
    with pytest.raises(ValidationError, match="unsigned token"):
        signed_token(encrypt(key, plaintext=signatureless), expecting(key))


@pytest.mark.parametrize(
    "plaintext",
    [b'{"sub": "alice"}', b"\xff\xfe", b"a.b", f"{encoded({'typ': 'JWT'})}.e30.c2ln".encode()],
    ids=["json", "binary", "two-parts", "no-alg"],
)
def test_an_inner_token_that_is_no_jws_is_refused(plaintext: bytes) -> None:
    key = enc_key("RSA-OAEP-256")
    with pytest.raises(ValidationError, match=r"does not hold a signed token \(JWS\)"):
        signed_token(encrypt(key, plaintext=plaintext), expecting(key))


def test_a_nested_jwe_is_refused() -> None:
    key = enc_key("RSA-OAEP-256")
    with pytest.raises(ValidationError, match="does not hold a signed token"):
        signed_token(encrypt(key, plaintext=encrypt(key)), expecting(key))


@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "ECDH-ES"])
def test_a_tampered_token_is_refused(alg: str) -> None:
    key = enc_key(alg)
    parts = encrypt(key).split(".")
    ciphertext = bytearray(base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4)))
    ciphertext[0] ^= 1
    parts[3] = b64url(bytes(ciphertext))
    with pytest.raises(ValidationError, match="cannot be decrypted"):
        signed_token(".".join(parts), expecting(key))


def test_a_header_changed_after_encryption_fails_authentication() -> None:
    key = enc_key("RSA-OAEP-256")
    parts = encrypt(key).split(".")
    parts[0] = encoded({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.kid, "x": 1})
    with pytest.raises(ValidationError, match="cannot be decrypted"):
        signed_token(".".join(parts), expecting(key))


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({"zip": "DEF"}, r"compressed encrypted tokens \(zip\)"), ({"crit": ["x"]}, "critical")],
)
def test_headers_not_understood_are_refused(extra: dict[str, Any], reason: str) -> None:
    key = enc_key("RSA-OAEP-256")
    header = encoded({"alg": "RSA-OAEP-256", "enc": "A256GCM", **extra})
    with pytest.raises(ValidationError, match=reason):
        signed_token(f"{header}.a.b.c.d", expecting(key))


@pytest.mark.parametrize(
    "token",
    ["a.b.c.d.e", "!!!.a.b.c.d", f"{encoded([1])}.a.b.c.d", "x" * 70_000],
    ids=["bad-json", "bad-base64", "not-object", "too-long"],
)
def test_malformed_tokens_get_a_short_reason(token: str) -> None:
    with pytest.raises(ValidationError) as raised:
        signed_token(
            token + ("" if is_jwe(token) else ".a.b.c.d"), expecting(enc_key("RSA-OAEP-256"))
        )
    assert len(str(raised.value)) < 120


def test_gcm_with_a_wrong_iv_length_is_refused() -> None:
    key = enc_key("RSA-OAEP-256")
    parts = encrypt(key).split(".")
    parts[2] = b64url(b"\0" * 8)
    with pytest.raises(ValidationError, match="cannot be decrypted"):
        decrypt_compact(".".join(parts), expecting(key))


def test_a_cek_of_the_wrong_size_is_refused() -> None:
    """A server (or forger) wrapping a 16-byte key for A256GCM: refused, not truncated."""
    key = enc_key("RSA-OAEP-256")
    header = encoded({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.kid})
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    wrapped = RSA_KEY.public_key().encrypt(b"k" * 16, oaep)
    token = f"{header}.{b64url(wrapped)}.{b64url(bytes(12))}.AAAA.{b64url(bytes(16))}"
    with pytest.raises(ValidationError, match="cannot be decrypted"):
        signed_token(token, expecting(key))


def test_messages_hold_no_key_material() -> None:
    key = enc_key("RSA-OAEP-256")
    numbers = RSA_KEY.private_numbers()
    secrets = {str(numbers.d), str(numbers.p), b64url(numbers.d.to_bytes(256, "big"))[:40]}
    messages = []
    for token in (encrypt(enc_key("RSA-OAEP", kid=key.kid)), encrypt(key, "A128GCM")):
        with pytest.raises(ValidationError) as raised:
            signed_token(
                token, expecting(key, algs=("RSA-OAEP-256", "RSA-OAEP"), encs=("A256GCM",))
            )
        messages.append(str(raised.value))
    assert not any(secret in message for secret in secrets for message in messages)
    assert "RSA-2048" in repr(key)
    assert str(numbers.d) not in repr(key)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alg=st.sampled_from([*KEY_MANAGEMENT_ALGORITHMS, "RSA1_5", "dir", "none"]),
    enc=st.sampled_from([*CONTENT_ENCRYPTION_ALGORITHMS, "A192GCM"]),
    extra=st.dictionaries(
        st.sampled_from(["kid", "epk", "apu", "apv", "cty", "iv", "tag"]), _JSON, max_size=3
    ),
    parts=st.lists(st.binary(max_size=300), min_size=4, max_size=4),
    epk_curve=st.sampled_from([None, "P-256", "P-384"]),
)
def test_hostile_tokens_only_ever_raise_validation_error(
    alg: str, enc: str, extra: dict[str, Any], parts: list[bytes], epk_curve: str | None
) -> None:
    keys = (enc_key("RSA-OAEP-256"), enc_key("RSA-OAEP"), *(enc_key(a) for a in EC_KEY_MANAGEMENT))
    header: dict[str, Any] = {"alg": alg, "enc": enc, **extra}
    if epk_curve:  # a real point, on the key's curve or another
        header["epk"] = ECKey.import_key(EC_KEYS[epk_curve].public_key()).as_dict()
    token = ".".join([encoded(header), *(b64url(part) for part in parts)])
    expected = Expected(keys, (*KEY_MANAGEMENT_ALGORITHMS,), CONTENT_ENCRYPTION_ALGORITHMS)
    with pytest.raises(ValidationError):
        signed_token(token, expected)


def test_a_retired_key_decrypts_until_its_date_and_not_after() -> None:
    """``decrypt-until``: a retired encryption key decrypts what was on its way to it until
    that time, then nothing (as if it had left the configuration)."""
    from datetime import UTC, datetime, timedelta

    from adapter.config.key_options import KeyState

    now = datetime.now(UTC)
    later = enc_key("RSA-OAEP-256", state=KeyState.RETIRED, decrypt_until=now + timedelta(hours=1))
    assert signed_token(encrypt(later), expecting(later)) == INNER
    past = enc_key("RSA-OAEP-256", state=KeyState.RETIRED, decrypt_until=now - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="unknown key"):
        signed_token(encrypt(past), expecting(past))
    with pytest.raises(ValidationError, match="no client key"):
        signed_token(encrypt(past, kid=False), expecting(past))


def test_decrypt_until_belongs_to_a_retired_encryption_key_only(tmp_path: Any) -> None:
    from adapter import ConfigError, load_config

    def config(key: dict[str, str]) -> dict[str, Any]:
        return {
            "issuer": "https://sso.example.com/realms/r",
            "client-id": "app",
            "credentials": {
                "method": "private_key_jwt",
                "keys": [{"keystore": str(tmp_path / "k.pem"), "algorithm": "RS256"}, key],
            },
        }

    until = {"decrypt-until": "2030-01-01T00:00:00Z", "keystore": str(tmp_path / "e.pem")}
    for key in ({"use": "enc", **until}, {"use": "sig", "state": "retired", **until}):
        with pytest.raises(ConfigError, match="decrypt-until: only a retired encryption key"):
            load_config(config(key))
