"""New client keys: a key pair and a self-signed certificate, written to a keystore.

The client-side twin of the identity server's "Generate new keys and certificate" button: the
keystore it writes is read by this adapter, by keytool and by openssl, and the certificate (or
the JWKS at ``/k_jwks``) is what the server is given.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from cryptography.x509.oid import NameOID

from adapter.errors import ConfigError
from adapter.jose import ASYMMETRIC_ALGORITHMS, MIN_RSA_BITS, PrivateKey

FORMATS = ("pkcs12", "jks", "pem")
_CURVE_FOR: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
_CERT_HASH: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "ES512": hashes.SHA512(),
}
# Deliberately slow for brute force, quick enough for a command run by a person.
_PKCS12_KDF_ROUNDS = 100_000


def generate_private_key(alg: str, key_size: int | None = None) -> PrivateKey:
    """A new private key that can sign with ``alg``; RSA defaults to 2048 bits (Keycloak's)."""
    if alg not in ASYMMETRIC_ALGORITHMS:
        raise ConfigError(
            f"--alg: unknown algorithm {alg!r}; use {', '.join(ASYMMETRIC_ALGORITHMS)}"
        )
    if alg.startswith(("RS", "PS")):
        bits = key_size or MIN_RSA_BITS
        if bits < MIN_RSA_BITS or bits > 16384:
            raise ConfigError(f"--key-size: {bits} is out of range; use 2048 to 16384 bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_size is not None:
        raise ConfigError(f"--key-size: applies to RSA only; {alg} has a fixed key size")
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(_CURVE_FOR[alg])


def parse_subject(subject: str) -> x509.Name:
    """An X.500 name from RFC 4514 text such as ``CN=my-app,O=Example``."""
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        raise ConfigError(
            f"--subject: {subject!r} is not a distinguished name; write e.g. CN=my-app,O=Example"
        ) from None
    if not list(name):
        raise ConfigError("--subject: is empty; write e.g. CN=my-app")
    return name


def common_name(name: str) -> x509.Name:
    """A subject of just ``CN=name``, whatever characters the name holds."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def self_signed_certificate(
    key: PrivateKey, subject: x509.Name, days: int, alg: str = "RS256"
) -> x509.Certificate:
    """A self-signed certificate for ``key``, valid from a minute ago for ``days`` days."""
    if days < 1 or days > 36500:
        raise ConfigError(f"--days: {days} is out of range; use 1 to 36500")
    now = datetime.now(UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = _CERT_HASH.get(alg, hashes.SHA256())
    else:
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm)


def write_keystore(
    path: Path,
    format: str,
    alias: str,
    key: PrivateKey,
    certificate: x509.Certificate,
    store_password: str | None,
    key_password: str | None = None,
) -> None:
    """Write ``key`` and ``certificate`` as ``format`` to ``path`` (mode 0600, never over a file).

    PKCS#12 has one password for store and key (as keytool insists), JKS may have two, PEM
    encrypts the key when a password is given and otherwise writes it in the clear.
    """
    if format == "pkcs12":
        if not store_password:
            raise ConfigError("--store-password-env: a PKCS#12 keystore needs a password")
        if key_password and key_password != store_password:
            raise ConfigError(
                "--key-password-env: PKCS#12 keystores use the store password for the key "
                "too (as keytool does); drop --key-password-env or use --format jks"
            )
        encryption = (
            PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(_PKCS12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(store_password.encode())
        )
        data = pkcs12.serialize_key_and_certificates(
            alias.encode(), key, certificate, None, encryption
        )
    elif format == "jks":
        from adapter.keys._jks import jks_bytes

        if not store_password or len(store_password) < 6:
            raise ConfigError(
                "--store-password-env: a JKS keystore needs a password of at least 6 "
                "characters (keytool refuses shorter ones)"
            )
        pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        chain = [certificate.public_bytes(Encoding.DER)]
        data = jks_bytes(path, alias, pkcs8, chain, store_password, key_password or store_password)
    elif format == "pem":
        password = key_password or store_password
        encryption = BestAvailableEncryption(password.encode()) if password else NoEncryption()
        data = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
        data += certificate.public_bytes(Encoding.PEM)
    else:
        raise ConfigError(f"--format: {format!r} is not known; use {', '.join(FORMATS)}")
    write_private_file(path, data)


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only; refuse to replace an existing file."""
    if not path.parent.is_dir():
        raise ConfigError(missing_directory(path))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; choose another --out or remove it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the file ({exc.strerror})") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def missing_directory(path: Path) -> str:
    """The message for a file whose directory does not exist: which one to create (it is not
    made on the fly, since a mistyped path would then scatter keys over the disk)."""
    directory = f"{path.parent}{os.sep}"
    return f"{path}: the directory {directory} does not exist; create the directory {directory}"
