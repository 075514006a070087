"""Encryption keys (``use = "enc"``): configuration errors, the ring's states and the JWKS.

Each bad configuration gets one line naming the field and the fix; the ring publishes
encryption keys after the signing keys with ``use: enc`` and their ``alg`` (Keycloak picks a
client's encryption key by alg), keeps a key configured ``retired`` unpublished but usable for
decryption, and never lets an encryption key sign.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from joserfc.jwk import ECKey, RSAKey

from adapter import ConfigError, KeystoreError, load_config
from adapter.config.key_options import KeyState
from adapter.jose import PrivateKey, b64url
from adapter.keys.keyring import EncryptionKey, KeyRing, SigningKey
from adapter.keys.loader import load_key_ring
from adapter.protocol.jwe import expected_id_tokens

ISSUER = "https://sso.example.com/realms/demo"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
PASSWORD = "enc-St0re-pw-5d1e"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())
ED = ed25519.Ed25519PrivateKey.generate()


def pem(directory: Path, name: str, key: Any) -> str:
    path = directory / f"{name}.pem"
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(0o600)
    return path.name


def native(
    directory: Path,
    keys: list[dict[str, Any]],
    method: str = "private_key_jwt",
    **top: Any,
) -> dict[str, Any]:
    credentials: dict[str, Any] = {"method": method, "keys": keys}
    if method.startswith("client_secret"):
        credentials["secret"] = "s3cret-value-for-tests-only"
    return {"issuer": ISSUER, "client-id": "app", "credentials": credentials, **top}


def load(directory: Path, document: dict[str, Any]) -> KeyRing:
    return load_key_ring(load_config(document, base_dir=directory, web=False), now=NOW)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "rsa": pem(tmp_path, "rsa", RSA),
        "rsa2": pem(tmp_path, "rsa2", RSA_2),
        "ec": pem(tmp_path, "ec", EC),
        "ed": pem(tmp_path, "ed", ED),
    }


# --- configuration errors: one line each, naming the field ------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            {"use": "enc", "algorithm": "RSA1_5"},
            r"credentials\.keys\[1\]\.algorithm: RSA1_5 is refused \(RSAES-PKCS1-v1_5 "
            r"decryption is a padding oracle\); use RSA-OAEP-256",
        ),
        (
            {"use": "enc", "algorithm": "RS256"},
            r"credentials\.keys\[1\]\.algorithm: RS256 is not a key-management algorithm, and a "
            r'use = "enc" key decrypts; use one of RSA-OAEP-256, RSA-OAEP, ECDH-ES',
        ),
        (
            {"algorithm": "RSA-OAEP-256"},
            r"credentials\.keys\[1\]\.algorithm: RSA-OAEP-256 encrypts, it does not sign; set "
            r'use = "enc" on this key',
        ),
        (
            {"use": "enc", "algorithm": "A256KW"},
            r"credentials\.keys\[1\]\.algorithm: unknown algorithm 'A256KW'; use one of "
            r"RSA-OAEP-256, RSA-OAEP, ECDH-ES, ECDH-ES\+A128KW, ECDH-ES\+A256KW$",
        ),
        (
            {"use": "encrypt"},
            r"credentials\.keys\[1\]\.use: 'encrypt' is not valid; use one of sig, enc",
        ),
    ],
    ids=["rsa1_5", "signing-alg-on-enc", "enc-alg-on-sig", "unknown-alg", "unknown-use"],
)
def test_bad_key_fields_are_refused_at_load(
    tmp_path: Path, files: dict[str, str], key: dict[str, Any], message: str
) -> None:
    keys = [{"keystore": files["rsa"]}, {"keystore": files["rsa2"], **key}]
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(native(tmp_path, keys), base_dir=tmp_path, web=False)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("keystore", "algorithm", "message"),
    [
        (
            "rsa2",
            "ECDH-ES",
            r"credentials\.keys\[1\]\.algorithm: ECDH-ES needs an EC key, this is RSA-2048 "
            r"\(.*rsa2\.pem\); use one of RSA-OAEP-256, RSA-OAEP$",
        ),
        (
            "ec",
            "RSA-OAEP-256",
            r"credentials\.keys\[1\]\.algorithm: RSA-OAEP-256 needs an RSA key, this is EC P-256 "
            r"\(.*ec\.pem\); use one of ECDH-ES, ECDH-ES\+A128KW, ECDH-ES\+A256KW$",
        ),
        (
            "ed",
            None,
            r"credentials\.keys\[1\]\.use: an Ed25519 key cannot decrypt \(.*ed\.pem\); an "
            r"encryption key is RSA \(2048 bits or more\) or EC P-256, P-384 or P-521$",
        ),
    ],
    ids=["rsa-with-ecdh", "ec-with-oaep", "ed25519"],
)
def test_a_key_that_cannot_do_its_algorithm_is_refused_when_loaded(
    tmp_path: Path, files: dict[str, str], keystore: str, algorithm: str | None, message: str
) -> None:
    enc: dict[str, Any] = {"keystore": files[keystore], "use": "enc"}
    if algorithm:
        enc["algorithm"] = algorithm
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, native(tmp_path, [{"keystore": files["rsa"]}, enc]))


def test_a_1024_bit_rsa_encryption_key_is_refused_naming_the_field(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused
    keys = [
        {"keystore": pem(tmp_path, "rsa", RSA)},
        {"keystore": pem(tmp_path, "small", small), "use": "enc"},
    ]
    with pytest.raises(KeystoreError, match=r"^credentials\.keys\[1\]: .*1024.*2048") as raised:
        load(tmp_path, native(tmp_path, keys))
    assert "\n" not in str(raised.value)


def test_private_key_jwt_needs_a_signing_key(tmp_path: Path, files: dict[str, str]) -> None:
    keys = [{"keystore": files["rsa"], "use": "enc"}]
    with pytest.raises(
        ConfigError,
        match=r'^credentials\.keys: every key is use = "enc"; private_key_jwt needs a signing key',
    ):
        load_config(native(tmp_path, keys), base_dir=tmp_path, web=False)


def test_a_secret_method_takes_encryption_keys_only(tmp_path: Path, files: dict[str, str]) -> None:
    keys = [{"keystore": files["rsa"]}, {"keystore": files["rsa2"], "use": "enc"}]
    with pytest.raises(
        ConfigError,
        match=r"^credentials\.keys\[0\]\.use: client_secret_basic signs nothing with a key; "
        r'set use = "enc"',
    ):
        load_config(native(tmp_path, keys, "client_secret_basic"), base_dir=tmp_path, web=False)


def test_a_secret_method_with_encryption_keys_has_no_signer(
    tmp_path: Path, files: dict[str, str]
) -> None:
    keys = [{"keystore": files["rsa"], "use": "enc"}, {"keystore": files["ec"], "use": "enc"}]
    ring = load(tmp_path, native(tmp_path, keys, "client_secret_basic"))
    assert ring.keys == ()
    assert [(k.alg, k.state) for k in ring.encryption_keys] == [
        ("RSA-OAEP-256", KeyState.ACTIVE),
        ("ECDH-ES+A256KW", KeyState.ACTIVE),
    ]
    published = json.loads(ring.jwks_bytes)["keys"]
    assert [(k["use"], k["alg"], k["kty"]) for k in published] == [
        ("enc", "RSA-OAEP-256", "RSA"),
        ("enc", "ECDH-ES+A256KW", "EC"),
    ]


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            {"id-token-encrypted-response-alg": "RSA1_5"},
            r"^id-token-encrypted-response-alg: RSA1_5 is refused \(RSAES-PKCS1-v1_5",
        ),
        (
            {"id-token-encrypted-response-alg": "RSA-OAEP-512"},
            r"^id-token-encrypted-response-alg: 'RSA-OAEP-512' is not valid; use one of "
            r"RSA-OAEP-256, RSA-OAEP, ECDH-ES",
        ),
        (
            {"id-token-encrypted-response-enc": "A256GCM"},
            r"^id-token-encrypted-response-enc: needs id-token-encrypted-response-alg beside it",
        ),
        (
            {
                "id-token-encrypted-response-alg": "RSA-OAEP",
                "id-token-encrypted-response-enc": "A192GCM",
            },
            r"^id-token-encrypted-response-enc: 'A192GCM' is not valid; use one of A128CBC-HS256, "
            r"A128GCM, A256GCM, A256CBC-HS512$",
        ),
    ],
    ids=["rsa1_5", "unknown-alg", "enc-alone", "unknown-enc"],
)
def test_bad_id_token_encryption_settings(
    tmp_path: Path, files: dict[str, str], top: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(
            native(tmp_path, [{"keystore": files["rsa"]}], **top), base_dir=tmp_path, web=False
        )


def test_the_id_token_encryption_settings_default_and_read(
    tmp_path: Path, files: dict[str, str]
) -> None:
    keys = [{"keystore": files["rsa"]}]
    plain = load_config(native(tmp_path, keys), base_dir=tmp_path, web=False)
    assert (plain.id_token_encrypted_response_alg, plain.id_token_encrypted_response_enc) == (
        None,
        None,
    )
    only_alg = load_config(
        native(tmp_path, keys, **{"id-token-encrypted-response-alg": "rsa-oaep-256"}),
        base_dir=tmp_path,
        web=False,
    )
    assert only_alg.id_token_encrypted_response_alg == "RSA-OAEP-256"
    assert only_alg.id_token_encrypted_response_enc == "A128CBC-HS256"  # OpenID's default


@pytest.mark.parametrize("state", [None, "retired"])
def test_the_configured_alg_needs_a_published_encryption_key_with_it(
    tmp_path: Path, files: dict[str, str], state: str | None
) -> None:
    enc: dict[str, Any] = {"keystore": files["rsa2"], "use": "enc", "algorithm": "RSA-OAEP"}
    if state:
        enc.update(algorithm="RSA-OAEP-256", state=state)
    document = native(
        tmp_path,
        [{"keystore": files["rsa"]}, enc],
        **{"id-token-encrypted-response-alg": "RSA-OAEP-256"},
    )
    with pytest.raises(
        ConfigError,
        match=r"^id-token-encrypted-response-alg: no published encryption key has algorithm "
        r'RSA-OAEP-256; add a \[\[credentials.keys\]\] entry with use = "enc" and algorithm = '
        r'"RSA-OAEP-256"',
    ):
        load(tmp_path, document)


def test_a_kid_shared_by_a_signing_and_an_encryption_key_is_refused(
    tmp_path: Path, files: dict[str, str]
) -> None:
    keys = [
        {"keystore": files["rsa"], "kid": "same"},
        {"keystore": files["rsa2"], "use": "enc", "kid": "same"},
    ]
    with pytest.raises(ConfigError, match=r"kid 'same' is used by credentials\.keys"):
        load(tmp_path, native(tmp_path, keys))


# --- the ring: signing unchanged, encryption keys published with alg --------------------------


def test_signing_is_unchanged_by_encryption_keys(tmp_path: Path, files: dict[str, str]) -> None:
    keys = [
        {"keystore": files["rsa"], "kid": "sig-1"},
        {"keystore": files["rsa2"], "use": "enc", "kid": "enc-1"},
        {"keystore": files["ec"], "use": "enc", "kid": "enc-2", "state": "next"},
    ]
    ring = load(tmp_path, native(tmp_path, keys))
    assert [k.kid for k in ring.keys] == ["sig-1"]
    assert ring.active().kid == "sig-1"
    assert all(isinstance(k, SigningKey) for k in ring.keys)
    assert all(not hasattr(k, "sign") for k in ring.encryption_keys)
    published = json.loads(ring.jwks_bytes)["keys"]
    assert [(k["kid"], k["use"], k["alg"]) for k in published] == [
        ("sig-1", "sig", "RS256"),
        ("enc-1", "enc", "RSA-OAEP-256"),
        ("enc-2", "enc", "ECDH-ES+A256KW"),
    ]
    for jwk in published:
        assert not PRIVATE_MEMBERS & set(jwk)
    assert [ring.state_at(k, NOW) for k in ring.encryption_keys] == [KeyState.ACTIVE, KeyState.NEXT]


def test_a_retired_encryption_key_is_not_published_but_still_decrypts(
    tmp_path: Path, files: dict[str, str]
) -> None:
    keys = [
        {"keystore": files["rsa"]},
        {"keystore": files["rsa2"], "use": "enc", "kid": "old", "state": "retired"},
        {"keystore": files["ec"], "use": "enc", "kid": "new", "algorithm": "ECDH-ES"},
    ]
    config = load_config(native(tmp_path, keys), base_dir=tmp_path, web=False)
    ring = load_key_ring(config, now=NOW)
    assert [k["kid"] for k in json.loads(ring.jwks_bytes)["keys"] if k["use"] == "enc"] == ["new"]
    expected = expected_id_tokens(config, ring)
    assert [k.kid for k in expected.keys] == ["old", "new"]
    assert expected.algs == ("RSA-OAEP-256", "ECDH-ES")
    assert not expected.required


def test_encryption_keys_activate_by_time(tmp_path: Path, files: dict[str, str]) -> None:
    switch = NOW + timedelta(hours=1)
    keys = [
        {"keystore": files["rsa"]},
        {"keystore": files["rsa2"], "use": "enc", "kid": "old"},
        {"keystore": files["ec"], "use": "enc", "kid": "new", "activate-at": switch.isoformat()},
    ]
    ring = load(tmp_path, native(tmp_path, keys))
    old, new = ring.encryption_keys
    assert (ring.state_at(old, NOW), ring.state_at(new, NOW)) == (KeyState.ACTIVE, KeyState.NEXT)
    later = switch + timedelta(seconds=1)
    assert (ring.state_at(old, later), ring.state_at(new, later)) == (
        KeyState.RETIRED,
        KeyState.ACTIVE,
    )
    # Published throughout: the bytes are rendered once, and the server may still use "old".
    assert {k["kid"] for k in json.loads(ring.jwks_bytes)["keys"]} >= {"old", "new"}


def test_the_jwks_bytes_and_etag_are_rendered_once(tmp_path: Path, files: dict[str, str]) -> None:
    keys = [{"keystore": files["rsa"]}, {"keystore": files["rsa2"], "use": "enc"}]
    ring = load(tmp_path, native(tmp_path, keys))
    assert ring.jwks_bytes is ring.jwks_bytes
    without = load(tmp_path, native(tmp_path, keys[:1]))
    assert ring.etag != without.etag


def test_an_encrypting_configuration_expects_encrypted_id_tokens(
    tmp_path: Path, files: dict[str, str]
) -> None:
    keys = [{"keystore": files["rsa"]}, {"keystore": files["rsa2"], "use": "enc"}]
    top = {
        "id-token-encrypted-response-alg": "RSA-OAEP-256",
        "id-token-encrypted-response-enc": "A256GCM",
    }
    config = load_config(native(tmp_path, keys, **top), base_dir=tmp_path, web=False)
    expected = expected_id_tokens(config, load_key_ring(config, now=NOW))
    assert (expected.algs, expected.encs, expected.required) == (
        ("RSA-OAEP-256",),
        ("A256GCM",),
        True,
    )


# --- no key material in reprs, messages, logs or the JWKS -------------------------------------


def _secrets(key: PrivateKey) -> list[str]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        values = [numbers.d, numbers.p, numbers.q]
        return [str(v) for v in values] + [
            b64url(v.to_bytes((v.bit_length() + 7) // 8, "big")) for v in values
        ]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    value = key.private_numbers().private_value
    return [str(value), b64url(value.to_bytes(32, "big"))]


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_no_key_material_in_reprs_logs_or_the_jwks(
    tmp_path: Path, files: dict[str, str], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapter")
    private = {"rsa": RSA_2, "ec": EC}[kind]
    keys = [
        {"keystore": files["rsa"]},
        {"keystore": files["rsa2" if kind == "rsa" else "ec"], "use": "enc"},
    ]
    config = load_config(native(tmp_path, keys), base_dir=tmp_path, web=False)
    ring = load_key_ring(config, now=NOW)
    (key,) = ring.encryption_keys
    jose_key = (RSAKey if kind == "rsa" else ECKey).import_key(private)  # type: ignore[attr-defined]
    assert jose_key.as_dict(private=True)["d"] in _secrets(private)  # the check can see d
    shown = "\n".join([repr(ring), repr(key), repr(config), ring.jwks_bytes.decode(), caplog.text])
    for secret in _secrets(private):
        assert secret not in shown
    for jwk in json.loads(ring.jwks_bytes)["keys"]:
        assert not PRIVATE_MEMBERS & set(jwk)
    assert isinstance(key, EncryptionKey)
    assert "EncryptionKey(kid=" in repr(key)
