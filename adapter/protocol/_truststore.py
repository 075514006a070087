"""CA certificates from the truststore a Keycloak user already has: JKS, PKCS#12 or PEM.

Java tells JKS from PKCS#12 by the file's content, not its name (since Java 9,
``keytool -importcert -keystore t.jks`` writes PKCS#12 into ``t.jks``), so this reader does the
same; ``truststore-type`` is checked against the content rather than trusted over it. As in
Java, a JKS or PKCS#12 truststore contributes its trusted-certificate entries and the
certificate of each key entry (whose key is never decrypted). Every failure is one
:class:`ConfigError` line naming the field to fix: ``truststore``, ``truststore-password`` or
``truststore-type``; file content is treated as hostile and never quoted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from adapter.config._files import KEYSTORE_LIMIT, FileRefused, read_regular_file
from adapter.config.secret import Secret
from adapter.errors import ConfigError
from adapter.keys._entry import checked_certificates
from adapter.keys._pkcs12_mac import verify_mac

_JKS_MAGIC = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")  # JKS, JCEKS
_DER_SEQUENCE = 0x30


@dataclass(frozen=True)
class Truststore:
    """The certificates of one truststore file; ``type`` is what its content turned out to be."""

    path: Path
    type: str
    certificates: tuple[x509.Certificate, ...]

    def pem(self) -> str:
        """The certificates as one PEM bundle, for ``ssl.SSLContext.load_verify_locations``."""
        return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in self.certificates)


def read_truststore(
    path: Path, password: Secret | None = None, declared: str | None = None
) -> Truststore:
    """Every certificate the truststore at ``path`` trusts; at least one, or a ConfigError."""
    data = _read(path)
    kind = _content_type(path, data)
    if declared is not None and declared != kind and {declared, kind} != {"JKS", "PKCS12"}:
        # JKS and PKCS#12 pass for each other, as in Java ("keystore.type.compat").
        raise ConfigError(
            f"truststore-type: {path} holds a {kind} truststore, not {declared}; fix or remove "
            "truststore-type"
        )
    secret = password.reveal() if password is not None else None
    if kind == "PEM":
        certificates = _parsed(path, lambda: _pem_certificates(data))
    elif kind == "JKS":
        certificates = _parsed(path, lambda: _jks_certificates(path, data, secret))
    else:
        certificates = _parsed(path, lambda: _pkcs12_certificates(path, data, secret))
    if not certificates:
        raise ConfigError(
            f"truststore: {path} holds no certificate; import the server's CA (keytool "
            "-importcert -alias ca -file ca.pem -keystore ...) or use a PEM file of CA certificates"
        )
    return Truststore(path, kind, tuple(certificates))


def _read(path: Path) -> bytes:
    """The file's bytes. A truststore holds public certificates only: no exposure warning."""
    try:
        data, _ = read_regular_file(path, what="truststore", limit=KEYSTORE_LIMIT)
    except FileRefused as exc:
        if exc.missing:
            raise ConfigError(
                f"truststore: {path} not found; check the path (relative paths resolve against "
                "the configuration file's directory)"
            ) from None
        shown = repr(str(path)) if exc.bad_name else str(path)
        raise ConfigError(f"truststore: cannot read {shown} ({exc.reason}); {exc.fix}") from None
    return data


def _content_type(path: Path, data: bytes) -> str:
    if data[:4] in _JKS_MAGIC:
        return "JKS"
    if b"-----BEGIN " in data[:65536]:
        return "PEM"
    if data[:1] == bytes([_DER_SEQUENCE]):
        return "PKCS12"
    raise ConfigError(f"truststore: {path} is not a JKS, PKCS#12 or PEM truststore; check the file")


def _parsed(path: Path, parse: Callable[[], list[x509.Certificate]]) -> list[x509.Certificate]:
    """Run a reader over the file; its ConfigErrors pass, anything else says "corrupt"."""
    try:
        certificates = parse()
    except ConfigError:
        raise
    except Exception:  # raised outside: the parser's exception may quote the input
        error = ConfigError(f"truststore: {path} is corrupt or in an unsupported format")
    else:
        return checked_certificates(f"truststore: {path}", certificates)
    raise error


def _pem_certificates(data: bytes) -> list[x509.Certificate]:
    """The CERTIFICATE blocks of a PEM bundle; other blocks (keys, CRLs) are left alone."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    return x509.load_pem_x509_certificates(data)


def _jks_certificates(path: Path, data: bytes, password: str | None) -> list[x509.Certificate]:
    """Trusted-certificate entries and key entries' own certificates, as Java trusts them.

    Without a password the store loads unchecked, as Java loads it with a null password.
    """
    try:
        import jks
    except ImportError:
        raise ConfigError(
            f"truststore: reading the JKS truststore {path} needs pyjks; pip install "
            "'oidc-adapter[jks]', or convert it to PEM (keytool -exportcert -rfc)"
        ) from None
    try:
        store = jks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        raise ConfigError(
            f"truststore-password: does not open {path} (wrong password); check the password"
        ) from None
    ders = [entry.cert for entry in store.certs.values()]
    ders += [entry.cert_chain[0][1] for entry in store.private_keys.values() if entry.cert_chain]
    return [x509.load_der_x509_certificate(der) for der in ders]


def _pkcs12_certificates(path: Path, data: bytes, password: str | None) -> list[x509.Certificate]:
    """Every certificate of a PKCS#12 truststore (keytool's trusted entries are cert bags)."""
    try:
        loaded = pkcs12.load_pkcs12(data, password.encode() if password is not None else None)
    except ValueError:
        if password is None:
            raise ConfigError(
                f"truststore-password: missing; the PKCS#12 truststore {path} is protected, "
                "give its password"
            ) from None
        if _mac_matches(data, password) is False:
            raise ConfigError(
                f"truststore-password: does not open {path} (wrong password); check the password"
            ) from None
        raise
    certificates = [c.certificate for c in loaded.additional_certs]
    if loaded.cert is not None:
        certificates.insert(0, loaded.cert.certificate)
    return certificates


def _mac_matches(data: bytes, password: str) -> bool | None:
    try:
        return verify_mac(data, password)
    except (ValueError, IndexError):
        return None
