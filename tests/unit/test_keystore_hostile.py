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


@pytest.mark.parametrize("name", ["s.p12", "plain.p12", "s.jks", "s.pem", "s.jwk"])
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
