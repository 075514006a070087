"""Hostile keystore files: whatever the bytes, the answer is a KeystoreError, never a crash."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter import read_keystore
from adapter.errors import KeystoreError
from adapter.keys.generate import parse_subject, self_signed_certificate, write_keystore

PASSWORD = "fuzz-password-1"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
CERT = self_signed_certificate(EC_KEY, parse_subject("CN=fuzz"), 5, "ES256")
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_CERT = self_signed_certificate(RSA_KEY, parse_subject("CN=rsa"), 5)


def samples(directory: Path) -> dict[str, bytes]:
    """One valid file per format, each with a certificate."""
    for name, fmt in (("s.p12", "pkcs12"), ("s.jks", "jks"), ("s.pem", "pem")):
        write_keystore(directory / name, fmt, "fuzz", EC_KEY, CERT, PASSWORD)
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": "",
        "y": "",
        "d": "",
        "x5c": [base64.b64encode(CERT.public_bytes(Encoding.DER)).decode()],
    }
    numbers = EC_KEY.private_numbers()
    for member, value in (
        ("x", numbers.public_numbers.x),
        ("y", numbers.public_numbers.y),
        ("d", numbers.private_value),
    ):
        jwk[member] = base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()
    (directory / "s.jwk").write_text(json.dumps(jwk))
    plain = pkcs12.serialize_key_and_certificates(b"fuzz", EC_KEY, CERT, None, NoEncryption())
    (directory / "plain.p12").write_bytes(plain)  # no MAC, nothing encrypted: all bytes reachable
    # RSA keys load without cryptography's validation: mutated numbers must fail cleanly too.
    plain = pkcs12.serialize_key_and_certificates(b"rsa", RSA_KEY, RSA_CERT, None, NoEncryption())
    (directory / "plain-rsa.p12").write_bytes(plain)
    traditional = PrivateFormat.TraditionalOpenSSL
    (directory / "rsa.pem").write_bytes(
        RSA_KEY.private_bytes(Encoding.PEM, traditional, NoEncryption())
    )
    return {p.name: p.read_bytes() for p in directory.iterdir()}


SAMPLES: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def _samples(tmp_path_factory: pytest.TempPathFactory) -> None:
    SAMPLES.update(samples(tmp_path_factory.mktemp("samples")))


def assert_only_keystore_errors(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    message = ""
    try:
        read_keystore(path, password=None if name.startswith("plain") else PASSWORD)
    except KeystoreError as error:  # any other exception fails the test
        message = str(error)
    assert "\n" not in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "name", ["s.p12", "plain.p12", "plain-rsa.p12", "s.jks", "s.pem", "rsa.pem", "s.jwk"]
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_files_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory, name: str, data: st.DataObject
) -> None:
    original = SAMPLES[name]
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    assert_only_keystore_errors(tmp_path_factory.mktemp("fuzz"), name, bytes(mutated))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("short.p12", b"\x30\x05\x02\x01\x03\x30\x00"),
        ("empty.p12", b""),
        ("deep.jwk", b"[" * 100_000),
        ("bad-x5c.jwk", b'{"kty":"EC","d":"x","x5c":["AAAA"]}'),
        ("junk.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    ],
)
def test_known_hostile_inputs(tmp_path: Path, name: str, data: bytes) -> None:
    with pytest.raises(KeystoreError):
        read_keystore(_write(tmp_path / name, data), password="x")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_certificate_for_another_key_is_refused(tmp_path: Path) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_cert = self_signed_certificate(other, parse_subject("CN=other"), 5)
    key_pem = EC_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path = _write(tmp_path / "mixed.pem", key_pem + other_cert.public_bytes(Encoding.PEM))
    with pytest.raises(KeystoreError, match="no certificate matches the private key"):
        read_keystore(path)


# An RSA key whose parts do not match. Keys are loaded without cryptography's slow validation
# (primality tests), so the loaders' own probe must refuse them, whatever the format.
INCONSISTENT = "the private key is inconsistent (its parts do not match)"


def _rsa_variant(**changes: int) -> rsa.RSAPrivateKey:
    numbers = RSA_KEY.private_numbers()
    parts = {
        "p": numbers.p,
        "q": numbers.q,
        "d": numbers.d,
        "dmp1": numbers.dmp1,
        "dmq1": numbers.dmq1,
        "iqmp": numbers.iqmp,
    }
    parts.update(changes)
    wrong = rsa.RSAPrivateNumbers(**parts, public_numbers=numbers.public_numbers)
    return wrong.private_key(unsafe_skip_rsa_key_validation=True)


def _numbers_jwk(key: rsa.RSAPrivateKey) -> bytes:
    numbers = key.private_numbers()
    values = {
        "n": numbers.public_numbers.n,
        "e": numbers.public_numbers.e,
        "d": numbers.d,
        "p": numbers.p,
        "q": numbers.q,
        "dp": numbers.dmp1,
        "dq": numbers.dmq1,
        "qi": numbers.iqmp,
    }
    jwk = {"kty": "RSA", "kid": "rsa"}
    for member, value in values.items():
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        jwk[member] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    x5c = [base64.b64encode(RSA_CERT.public_bytes(Encoding.DER)).decode()]
    return json.dumps({**jwk, "x5c": x5c}).encode()


def _rsa_store(directory: Path, name: str, key: rsa.RSAPrivateKey) -> Path:
    """``key`` with RSA_CERT (same public key) in the format ``name``'s extension says."""
    path = directory / name
    if name.endswith(".jwk"):
        return _write(path, _numbers_jwk(key))
    if name == "plain.p12":
        data = pkcs12.serialize_key_and_certificates(b"rsa", key, RSA_CERT, None, NoEncryption())
        return _write(path, data)
    if name == "legacy.p12":  # openssl -legacy: 3DES keys, RC2 certificates, SHA-1 MAC
        encryption = (
            PrivateFormat.PKCS12.encryption_builder()
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .build(PASSWORD.encode())
        )
        data = pkcs12.serialize_key_and_certificates(b"rsa", key, RSA_CERT, None, encryption)
        return _write(path, data)
    fmt = {".p12": "pkcs12", ".jks": "jks", ".pem": "pem"}[path.suffix]
    write_keystore(path, fmt, "rsa", key, RSA_CERT, PASSWORD)
    return path


STORE_NAMES = ["s.pem", "s.p12", "plain.p12", "legacy.p12", "s.jks", "s.jwk"]
WRONG_PARTS = {
    "d": lambda n: {"d": n.d + 2},
    "dmp1": lambda n: {"dmp1": n.dmp1 + 2},
    "iqmp": lambda n: {"iqmp": n.iqmp + 1},
    "d and dmp1": lambda n: {"d": n.d + 2, "dmp1": n.dmp1 + 2},  # signatures come out wrong
}


@pytest.mark.parametrize("name", STORE_NAMES)
def test_a_consistent_rsa_key_loads_from_every_format(tmp_path: Path, name: str) -> None:
    path = _rsa_store(tmp_path, name, RSA_KEY)
    (entry,) = read_keystore(path, password=None if name.startswith("plain") else PASSWORD)
    assert entry.private_key.private_numbers() == RSA_KEY.private_numbers()  # type: ignore[union-attr]
    assert entry.cert_chain == (RSA_CERT,)


@pytest.mark.parametrize("wrong", list(WRONG_PARTS))
@pytest.mark.parametrize("name", STORE_NAMES)
def test_an_inconsistent_rsa_key_is_refused_by_every_format(
    tmp_path: Path, name: str, wrong: str
) -> None:
    bad = _rsa_variant(**WRONG_PARTS[wrong](RSA_KEY.private_numbers()))
    path = _rsa_store(tmp_path, name, bad)
    with pytest.raises(KeystoreError) as refused:
        read_keystore(path, password=None if name.startswith("plain") else PASSWORD)
    message = str(refused.value)
    named = f"{path}: key 'rsa': " if name.endswith((".p12", ".jks")) else f"{path}: "
    assert message.startswith(named + INCONSISTENT), message
    assert "\n" not in message
    assert PASSWORD not in message
    numbers = bad.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q, numbers.dmp1):
        assert str(secret) not in message
        assert f"{secret:x}" not in message


def test_pkcs12_keys_are_not_decrypted_by_load_pkcs12(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store password is proven by the MAC and the key decrypted by the fast loader:
    ``load_pkcs12`` (whose key validation is the slow part) sees certificates only."""
    from adapter.keys import _pkcs12

    seen: list[object] = []
    original = pkcs12.load_pkcs12

    def spy(data: bytes, password: bytes | None) -> pkcs12.PKCS12KeyAndCertificates:
        loaded = original(data, password)
        seen.append(loaded.key)
        return loaded

    monkeypatch.setattr(_pkcs12.pkcs12, "load_pkcs12", spy)
    for name in ("s.p12", "legacy.p12"):
        path = _rsa_store(tmp_path, name, RSA_KEY)
        (entry,) = read_keystore(path, password=PASSWORD)
        assert entry.alias == "rsa"
    assert seen == [None, None]


@pytest.mark.parametrize(
    "members",
    [
        {"p": None, "q": None, "dp": None, "dq": None, "qi": None},  # d only: primes recovered
        {"qi": None},  # some CRT members but not all
    ],
)
def test_rsa_jwk_without_crt_members(tmp_path: Path, members: dict[str, None]) -> None:
    jwk = json.loads(_numbers_jwk(RSA_KEY))
    for member in members:
        del jwk[member]
    path = _write(tmp_path / "k.jwk", json.dumps(jwk).encode())
    if len(members) == 5:
        (entry,) = read_keystore(path)
        assert entry.private_key.private_numbers() == RSA_KEY.private_numbers()  # type: ignore[union-attr]
    else:
        with pytest.raises(KeystoreError, match="the RSA JWK is malformed"):
            read_keystore(path)
