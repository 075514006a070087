"""Interoperability with the real tools: keytool (Java 17) and openssl (3.0).

Every keystore is made during the run by keytool, openssl or our own ``oidc-adapter keys
generate``, and read back by the other side: keytool's and openssl's stores load with
``read_keystore`` with the same certificate and public key the tools report; key ids and
thumbprints equal hashes of what openssl prints; and the stores the CLI writes are listed and
decrypted by keytool and openssl. Stores made by keytool are built once per module (keytool
starts a JVM for every call).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from adapter import KeyEntry, SigningKey, read_keystore
from adapter.errors import KeystoreError
from adapter.jose import PrivateKey
from adapter.keys.keyring import default_kid
from adapter.keys.keystore import select_entry
from tests.conftest import CliRunner, require_tool, run_tool

pytestmark = pytest.mark.integration

STORE_PASSWORD = "St0re-Pa55-interop"
KEY_PASSWORD = "K3y-Pa55-interop"
PEM_PASSWORD = "Pem-Pa55-interop"
ENV = {"STORE_PW": STORE_PASSWORD, "KEY_PW": KEY_PASSWORD, "PEM_PW": PEM_PASSWORD}

PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.DOTALL
)
KEYTOOL_ENTRY = re.compile(r"^(\S+), .*, PrivateKeyEntry,", re.MULTILINE)
KEYTOOL_SHA256 = re.compile(r"Certificate fingerprint \(SHA-256\): ([0-9A-F:]+)")


# --- helpers: the tools, and independent re-computations ---------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def keytool(*args: str) -> str:
    """Run keytool with no terminal (a prompt would read EOF and fail instead of hanging)."""
    return run_tool("keytool", *args, input=b"").stdout.decode()


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return run_tool("openssl", *args, input=input).stdout


def one_certificate_pem(output: bytes) -> bytes:
    """The single PEM certificate in a tool's output, with LF line ends (keytool writes CRLF)."""
    blocks = PEM_CERTIFICATE.findall(output)
    assert len(blocks) == 1, output
    block: bytes = blocks[0].replace(b"\r\n", b"\n")
    return block if block.endswith(b"\n") else block + b"\n"


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def pkcs8(private_key: PrivateKey) -> bytes:
    return private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def openssl_cert_spki(cert_pem: bytes) -> bytes:
    """DER SubjectPublicKeyInfo of a certificate, as openssl extracts it."""
    public_pem = openssl("x509", "-pubkey", "-noout", input=cert_pem)
    return openssl("pkey", "-pubin", "-outform", "DER", input=public_pem)


def openssl_key_spki(key_file: Path, password: str | None = None) -> bytes:
    """DER SubjectPublicKeyInfo of a private key file, as openssl decrypts and derives it."""
    passin = ["-passin", f"pass:{password}"] if password is not None else []
    return openssl("pkey", "-in", str(key_file), *passin, "-pubout", "-outform", "DER")


def openssl_fingerprint(cert_pem: bytes, digest: str) -> bytes:
    """The digest bytes of ``openssl x509 -fingerprint -<digest>`` (``sha1 Fingerprint=AB:..``)."""
    line = openssl("x509", "-noout", "-fingerprint", f"-{digest}", input=cert_pem).decode()
    label, _, value = line.strip().partition("=")
    assert label.lower() == f"{digest} fingerprint", line
    return bytes.fromhex(value.replace(":", ""))


def openssl_kid(cert_pem: bytes) -> str:
    """Keycloak's kid computed here from openssl's DER SPKI: base64url(SHA-256(SPKI))."""
    return b64url(hashlib.sha256(openssl_cert_spki(cert_pem)).digest())


def only(entries: list[KeyEntry]) -> KeyEntry:
    assert len(entries) == 1, entries
    return entries[0]


def assert_key_type(private_key: PrivateKey, key_type: str) -> None:
    if key_type == "RSA":
        assert isinstance(private_key, rsa.RSAPrivateKey)
        assert private_key.key_size == 2048
    elif key_type == "EC":
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        assert private_key.curve.name == "secp256r1"
    else:
        assert isinstance(private_key, ed25519.Ed25519PrivateKey)


def fields(output: str) -> dict[str, str]:
    """``name: value`` lines (as ``keys generate`` prints them) as a dict."""
    pairs = (line.split(":", 1) for line in output.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


# --- keystores made by keytool ----------------------------------------------------------------


RSA_ARGS = ("-keyalg", "RSA", "-keysize", "2048")
EC_ARGS = ("-keyalg", "EC", "-groupname", "secp256r1")


@dataclass(frozen=True)
class KeytoolCase:
    storetype: str
    keys: tuple[tuple[str, tuple[str, ...]], ...]  # (alias as given to keytool, key options)
    key_password: str | None = None  # -keypass; None: the store password


KEYTOOL_CASES = {
    "jks-rsa": KeytoolCase("JKS", (("rsa-key", RSA_ARGS),)),
    "jks-ec": KeytoolCase("JKS", (("ec-key", EC_ARGS),)),
    "pkcs12-rsa": KeytoolCase("PKCS12", (("rsa-key", RSA_ARGS),)),
    "pkcs12-ec": KeytoolCase("PKCS12", (("ec-key", EC_ARGS),)),
    "jks-own-key-password": KeytoolCase("JKS", (("rsa-key", RSA_ARGS),), KEY_PASSWORD),
    "pkcs12-two-keys": KeytoolCase("PKCS12", (("Old-Key", RSA_ARGS), ("New-Key", EC_ARGS))),
}
KEY_TYPE: dict[tuple[str, ...], str] = {RSA_ARGS: "RSA", EC_ARGS: "EC"}


@dataclass(frozen=True)
class KeytoolStore:
    path: Path
    case: KeytoolCase
    certificates: dict[str, bytes]  # alias as given -> PEM from keytool -exportcert -rfc

    def read(self, key_password: str | None = None) -> list[KeyEntry]:
        return read_keystore(
            self.path,
            type=self.case.storetype,
            password=STORE_PASSWORD,
            key_password=key_password or self.case.key_password,
        )

    def listed_aliases(self) -> list[str]:
        """The private key aliases ``keytool -list`` shows, sorted."""
        listing = keytool("-list", "-keystore", str(self.path), "-storetype",
                          self.case.storetype, "-storepass", STORE_PASSWORD)  # fmt: skip
        return sorted(KEYTOOL_ENTRY.findall(listing))


def make_keytool_store(directory: Path, name: str) -> KeytoolStore:
    case = KEYTOOL_CASES[name]
    suffix = ".jks" if case.storetype == "JKS" else ".p12"
    path = directory / f"{name}{suffix}"
    base = ["-keystore", str(path), "-storetype", case.storetype, "-storepass", STORE_PASSWORD]
    keypass = ["-keypass", case.key_password] if case.key_password else []
    certificates = {}
    for alias, key_args in case.keys:
        keytool("-genkeypair", *base, *keypass, "-alias", alias, *key_args,
                "-dname", f"CN={alias},O=Interop", "-validity", "2")  # fmt: skip
        exported = keytool("-exportcert", "-rfc", *base, "-alias", alias)
        certificates[alias] = one_certificate_pem(exported.encode())
    return KeytoolStore(path, case, certificates)


@pytest.fixture(scope="module")
def keytool_stores(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], KeytoolStore]:
    """Keystores made by keytool, each built once per module on first use."""
    require_tool("keytool")
    directory = tmp_path_factory.mktemp("keytool")
    made: dict[str, KeytoolStore] = {}

    def get(name: str) -> KeytoolStore:
        if name not in made:
            made[name] = make_keytool_store(directory, name)
        return made[name]

    return get


SINGLE_KEY_CASES = ["jks-rsa", "jks-ec", "pkcs12-rsa", "pkcs12-ec", "jks-own-key-password"]


@pytest.mark.parametrize("name", SINGLE_KEY_CASES)
def test_keytool_store_reads_with_keytools_certificate_and_public_key(
    keytool_stores: Callable[[str], KeytoolStore], name: str
) -> None:
    store = keytool_stores(name)
    ((alias, key_args),) = store.case.keys
    entry = only(store.read())

    assert entry.alias == alias
    assert_key_type(entry.private_key, KEY_TYPE[key_args])
    exported = store.certificates[alias]
    assert len(entry.cert_chain) == 1
    assert pem(entry.cert_chain[0]) == exported
    from_cert = x509.load_pem_x509_certificate(exported).public_key()
    assert spki(entry.private_key.public_key()) == spki(from_cert)
    assert spki(entry.private_key.public_key()) == openssl_cert_spki(exported)


def test_keytool_jks_key_password_differs_from_store_password(
    keytool_stores: Callable[[str], KeytoolStore],
) -> None:
    store = keytool_stores("jks-own-key-password")

    with pytest.raises(KeystoreError, match="cannot decrypt key 'rsa-key'") as wrong:
        read_keystore(store.path, password=STORE_PASSWORD)  # key password defaults to store's
    assert STORE_PASSWORD not in str(wrong.value)

    entry = only(store.read(key_password=KEY_PASSWORD))
    assert pem(entry.cert_chain[0]) == store.certificates["rsa-key"]


def test_keytool_pkcs12_with_two_keys_returns_both_with_aliases(
    keytool_stores: Callable[[str], KeytoolStore],
) -> None:
    store = keytool_stores("pkcs12-two-keys")
    entries = store.read()

    keytool_aliases = store.listed_aliases()
    assert keytool_aliases == ["new-key", "old-key"]  # keytool folds aliases to lower case
    assert sorted(e.alias for e in entries if e.alias) == keytool_aliases
    for given, key_args in store.case.keys:
        entry = next(e for e in entries if e.alias == given.lower())
        assert_key_type(entry.private_key, KEY_TYPE[key_args])
        assert pem(entry.cert_chain[0]) == store.certificates[given]
        assert spki(entry.private_key.public_key()) == openssl_cert_spki(store.certificates[given])


@pytest.mark.parametrize(
    ("asked", "picked"),
    [
        ("old-key", "old-key"),
        ("new-key", "new-key"),
        ("Old-Key", "old-key"),
        ("NEW-KEY", "new-key"),
    ],
)
def test_select_entry_picks_keytool_alias_case_insensitively(
    keytool_stores: Callable[[str], KeytoolStore], asked: str, picked: str
) -> None:
    store = keytool_stores("pkcs12-two-keys")
    entries = store.read()

    chosen = select_entry(store.path, entries, asked)

    assert chosen.alias == picked
    given = next(alias for alias, _ in store.case.keys if alias.lower() == picked)
    assert pem(chosen.cert_chain[0]) == store.certificates[given]


def test_select_entry_without_alias_names_the_keytool_aliases(
    keytool_stores: Callable[[str], KeytoolStore],
) -> None:
    store = keytool_stores("pkcs12-two-keys")
    entries = store.read()

    with pytest.raises(KeystoreError, match="holds 2 keys") as ambiguous:
        select_entry(store.path, entries, None)
    assert "'old-key'" in str(ambiguous.value)
    assert "'new-key'" in str(ambiguous.value)
    with pytest.raises(KeystoreError, match="no key with alias 'other'"):
        select_entry(store.path, entries, "other")


# --- keystores made by openssl ----------------------------------------------------------------


@dataclass(frozen=True)
class OpensslKey:
    plain: Path  # the key as openssl wrote it before encryption (or unencrypted)
    encrypted: Path  # encrypted with PEM_PASSWORD
    certificate: Path  # self-signed by openssl req -x509
    key_type: str
    headers: tuple[str, ...]  # what the encrypted file must contain, proving its format


def _openssl_rsa(directory: Path) -> Path:
    plain = directory / "plain.pem"
    openssl("genrsa", "-out", str(plain), "2048")
    return plain


def make_openssl_key(directory: Path, name: str) -> OpensslKey:
    directory.mkdir()
    plain = directory / "plain.pem"
    encrypted = directory / "encrypted.pem"
    out = ["-out", str(encrypted)]
    passout = ["-passout", f"pass:{PEM_PASSWORD}"]
    headers: tuple[str, ...]
    if name == "pkcs8-encrypted-rsa":
        _openssl_rsa(directory)
        openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(plain), *passout, *out)
        key_type, headers = "RSA", ("-----BEGIN ENCRYPTED PRIVATE KEY-----",)
    elif name == "pkcs1-traditional-encrypted-rsa":
        _openssl_rsa(directory)
        openssl("rsa", "-in", str(plain), "-aes256", "-traditional", *passout, *out)
        key_type = "RSA"
        headers = ("-----BEGIN RSA PRIVATE KEY-----", "Proc-Type: 4,ENCRYPTED", "AES-256-CBC")
    elif name == "sec1-encrypted-ec":
        openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(plain))
        assert "-----BEGIN EC PRIVATE KEY-----" in plain.read_text()
        openssl("ec", "-in", str(plain), "-aes256", *passout, *out)
        key_type = "EC"
        headers = ("-----BEGIN EC PRIVATE KEY-----", "Proc-Type: 4,ENCRYPTED", "AES-256-CBC")
    else:
        assert name == "pkcs8-encrypted-ed25519"
        openssl("genpkey", "-algorithm", "ed25519", "-aes-256-cbc",
                "-pass", f"pass:{PEM_PASSWORD}", *out)  # fmt: skip
        openssl(
            "pkey", "-in", str(encrypted), "-passin", f"pass:{PEM_PASSWORD}", "-out", str(plain)
        )
        key_type, headers = "Ed25519", ("-----BEGIN ENCRYPTED PRIVATE KEY-----",)
    certificate = directory / "cert.pem"
    openssl("req", "-x509", "-new", "-key", str(plain), "-subj", f"/CN={name}/O=Interop",
            "-days", "2", "-out", str(certificate))  # fmt: skip
    return OpensslKey(plain, encrypted, certificate, key_type, headers)


OPENSSL_PEM_CASES = [
    "pkcs8-encrypted-rsa",
    "pkcs1-traditional-encrypted-rsa",
    "sec1-encrypted-ec",
    "pkcs8-encrypted-ed25519",
]


@pytest.fixture(scope="module")
def openssl_keys(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], OpensslKey]:
    """Keys and certificates made by openssl, each built once per module on first use."""
    require_tool("openssl")
    directory = tmp_path_factory.mktemp("openssl")
    made: dict[str, OpensslKey] = {}

    def get(name: str) -> OpensslKey:
        if name not in made:
            made[name] = make_openssl_key(directory / name, name)
        return made[name]

    return get


@pytest.mark.parametrize("legacy", [False, True], ids=["default", "legacy"])
def test_openssl_pkcs12_export_reads_with_alias_from_name(
    openssl_keys: Callable[[str], OpensslKey], tmp_path: Path, legacy: bool
) -> None:
    key = openssl_keys("pkcs8-encrypted-rsa")
    store = tmp_path / "openssl.p12"
    flags = ["-legacy"] if legacy else []
    openssl("pkcs12", "-export", *flags, "-inkey", str(key.plain), "-in", str(key.certificate),
            "-name", "OpenSSL-Alias", "-passout", f"pass:{STORE_PASSWORD}",
            "-out", str(store))  # fmt: skip
    info = run_tool("openssl", "pkcs12", "-info", "-noout", *flags, "-in", str(store),
                    "-passin", f"pass:{STORE_PASSWORD}")  # fmt: skip
    expected_cipher = "pbeWithSHA1And40BitRC2-CBC" if legacy else "PBES2, PBKDF2, AES-256-CBC"
    assert expected_cipher in info.stderr.decode()

    entry = only(read_keystore(store, password=STORE_PASSWORD))

    assert entry.alias == "OpenSSL-Alias"  # friendlyName, case kept
    assert_key_type(entry.private_key, "RSA")
    assert entry.cert_chain == (x509.load_pem_x509_certificate(key.certificate.read_bytes()),)
    assert spki(entry.private_key.public_key()) == openssl_key_spki(key.plain)
    with pytest.raises(KeystoreError, match="wrong store password"):
        read_keystore(store, password="not-" + STORE_PASSWORD)


@pytest.mark.parametrize(
    ("flags", "password"),
    [(["-keypbe", "NONE"], STORE_PASSWORD), ([], "")],
    ids=["unencrypted-key-bag", "empty-password"],
)
def test_openssl_pkcs12_with_plain_key_or_empty_password(
    openssl_keys: Callable[[str], OpensslKey], tmp_path: Path, flags: list[str], password: str
) -> None:
    key = openssl_keys("pkcs8-encrypted-rsa")
    store = tmp_path / "plain.p12"
    openssl("pkcs12", "-export", *flags, "-inkey", str(key.plain), "-in", str(key.certificate),
            "-name", "Plain", "-passout", f"pass:{password}", "-out", str(store))  # fmt: skip

    entry = only(read_keystore(store, password=password))

    assert entry.alias == "Plain"
    assert spki(entry.private_key.public_key()) == openssl_key_spki(key.plain)


@pytest.mark.parametrize("name", OPENSSL_PEM_CASES)
def test_openssl_encrypted_pem_with_certificate_in_the_same_file(
    openssl_keys: Callable[[str], OpensslKey], tmp_path: Path, name: str
) -> None:
    key = openssl_keys(name)
    text = key.encrypted.read_text()
    for header in key.headers:
        assert header in text
    combined = tmp_path / "combined.pem"
    combined.write_bytes(key.encrypted.read_bytes() + key.certificate.read_bytes())

    entry = only(read_keystore(combined, password=PEM_PASSWORD))

    assert_key_type(entry.private_key, key.key_type)
    assert spki(entry.private_key.public_key()) == openssl_key_spki(key.encrypted, PEM_PASSWORD)
    assert [pem(c) for c in entry.cert_chain] == [key.certificate.read_bytes()]


@pytest.mark.parametrize("name", OPENSSL_PEM_CASES)
def test_openssl_encrypted_pem_with_certificate_in_a_separate_file(
    openssl_keys: Callable[[str], OpensslKey], name: str
) -> None:
    key = openssl_keys(name)

    entry = only(
        read_keystore(key.encrypted, key_password=PEM_PASSWORD, certificate=key.certificate)
    )

    assert_key_type(entry.private_key, key.key_type)
    assert spki(entry.private_key.public_key()) == openssl_key_spki(key.encrypted, PEM_PASSWORD)
    assert [pem(c) for c in entry.cert_chain] == [key.certificate.read_bytes()]


@pytest.mark.parametrize("name", OPENSSL_PEM_CASES)
def test_openssl_pem_without_certificate_has_empty_chain(
    openssl_keys: Callable[[str], OpensslKey], name: str
) -> None:
    key = openssl_keys(name)

    encrypted = only(read_keystore(key.encrypted, password=PEM_PASSWORD))
    plain = only(read_keystore(key.plain))

    assert encrypted.cert_chain == ()
    assert plain.cert_chain == ()
    assert pkcs8(encrypted.private_key) == pkcs8(plain.private_key)
    assert spki(plain.private_key.public_key()) == openssl_key_spki(key.plain)


@pytest.mark.parametrize("name", OPENSSL_PEM_CASES)
def test_openssl_encrypted_pem_needs_the_right_password(
    openssl_keys: Callable[[str], OpensslKey], name: str
) -> None:
    key = openssl_keys(name)

    with pytest.raises(KeystoreError, match="encrypted; give its password"):
        read_keystore(key.encrypted)
    with pytest.raises(KeystoreError, match="cannot decrypt the private key") as wrong:
        read_keystore(key.encrypted, password="wrong-password")
    assert "wrong-password" not in str(wrong.value)


# --- key ids and certificate thumbprints --------------------------------------------------------


ALG_FOR = {"RSA": "RS256", "EC": "ES256", "Ed25519": "EdDSA"}


def entry_and_certificate(
    source: str,
    keytool_stores: Callable[[str], KeytoolStore],
    openssl_keys: Callable[[str], OpensslKey],
) -> tuple[KeyEntry, bytes, str]:
    """A key loaded by the adapter, the tool's own PEM certificate for it, and its key type."""
    tool, name = source.split(":")
    if tool == "keytool":
        store = keytool_stores(name)
        ((alias, key_args),) = store.case.keys
        return only(store.read()), store.certificates[alias], KEY_TYPE[key_args]
    key = openssl_keys(name)
    entry = only(read_keystore(key.encrypted, password=PEM_PASSWORD, certificate=key.certificate))
    return entry, key.certificate.read_bytes(), key.key_type


THUMBPRINT_SOURCES = [
    "keytool:pkcs12-rsa",
    "keytool:jks-ec",
    "openssl:pkcs1-traditional-encrypted-rsa",
    "openssl:sec1-encrypted-ec",
    "openssl:pkcs8-encrypted-ed25519",
]


@pytest.mark.parametrize("source", THUMBPRINT_SOURCES)
def test_default_kid_is_sha256_of_openssl_spki(
    keytool_stores: Callable[[str], KeytoolStore],
    openssl_keys: Callable[[str], OpensslKey],
    source: str,
) -> None:
    entry, cert_pem, _ = entry_and_certificate(source, keytool_stores, openssl_keys)

    assert default_kid(entry.private_key.public_key()) == openssl_kid(cert_pem)


@pytest.mark.parametrize("source", THUMBPRINT_SOURCES)
def test_x5t_thumbprints_match_openssl_fingerprints(
    keytool_stores: Callable[[str], KeytoolStore],
    openssl_keys: Callable[[str], OpensslKey],
    source: str,
) -> None:
    entry, cert_pem, key_type = entry_and_certificate(source, keytool_stores, openssl_keys)
    key = SigningKey(
        kid=default_kid(entry.private_key.public_key()),
        alg=ALG_FOR[key_type],
        private_key=entry.private_key,
        cert_chain=entry.cert_chain,
    )
    sha1 = b64url(openssl_fingerprint(cert_pem, "sha1"))
    sha256 = b64url(openssl_fingerprint(cert_pem, "sha256"))

    assert key.x5t == sha1
    assert key.x5t_s256 == sha256
    jwk = key.public_jwk()
    assert (jwk["x5t"], jwk["x5t#S256"]) == (sha1, sha256)
    der = openssl("x509", "-outform", "DER", input=cert_pem)
    assert jwk["x5c"] == [base64.b64encode(der).decode()]


# --- the CLI's keystores, read by keytool and openssl -------------------------------------------


def generate(cli: CliRunner, *args: str) -> dict[str, str]:
    result = cli("keys", "generate", *args, env=ENV)
    assert result.returncode == 0, result.stderr
    for secret in (STORE_PASSWORD, KEY_PASSWORD, PEM_PASSWORD):
        assert secret not in result.stdout + result.stderr
    return fields(result.stdout)


def show(cli: CliRunner, *args: str) -> dict[str, object]:
    result = cli("keys", "show", *args, "--json", env=ENV)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 1, rows
    row: dict[str, object] = rows[0]
    return row


def export_cert(cli: CliRunner, *args: str) -> bytes:
    result = cli("keys", "export-cert", *args, env=ENV)
    assert result.returncode == 0, result.stderr
    return result.stdout.encode()


def colon_hex(digest: bytes) -> str:
    return digest.hex(":").upper()


def assert_show_matches_openssl(row: dict[str, object], cert_pem: bytes) -> None:
    assert row["kid"] == openssl_kid(cert_pem)
    assert row["x5t"] == b64url(openssl_fingerprint(cert_pem, "sha1"))
    assert row["x5t#S256"] == b64url(openssl_fingerprint(cert_pem, "sha256"))
    assert row["sha256"] == colon_hex(openssl_fingerprint(cert_pem, "sha256"))


def test_cli_pkcs12_is_read_by_keytool_and_openssl(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("keytool")
    monkeypatch.setenv("STORE_PW", STORE_PASSWORD)  # for openssl -passin env:STORE_PW
    printed = generate(cli, "--alias", "Client-2026", "--out", "gen.p12", "--format", "pkcs12",
                       "--store-password-env", "STORE_PW")  # fmt: skip
    store = tmp_path / "gen.p12"
    exported = export_cert(cli, "gen.p12", "--store-password-env", "STORE_PW")
    assert printed["alias"] == "Client-2026"

    listing = keytool(
        "-list", "-storetype", "PKCS12", "-keystore", str(store), "-storepass", STORE_PASSWORD
    )
    assert KEYTOOL_ENTRY.findall(listing) == ["client-2026"]
    assert KEYTOOL_SHA256.findall(listing) == [printed["sha256"]]

    certs = openssl("pkcs12", "-in", str(store), "-passin", "env:STORE_PW", "-nokeys")
    assert b"friendlyName: Client-2026" in certs
    assert one_certificate_pem(certs) == exported
    key_pem = openssl("pkcs12", "-in", str(store), "-passin", "env:STORE_PW", "-nocerts", "-nodes")
    assert openssl("pkey", "-pubout", "-outform", "DER", input=key_pem) == openssl_cert_spki(
        exported
    )

    assert printed["sha256"] == colon_hex(openssl_fingerprint(exported, "sha256"))
    assert printed["kid"] == openssl_kid(exported)
    row = show(cli, "gen.p12", "--store-password-env", "STORE_PW")
    assert row["alias"] == "Client-2026"
    assert_show_matches_openssl(row, exported)


def test_cli_jks_is_read_by_keytool_with_its_own_key_password(
    cli: CliRunner, tmp_path: Path
) -> None:
    require_tool("keytool")
    printed = generate(cli, "--alias", "Client-2026", "--out", "gen.jks", "--format", "jks",
                       "--store-password-env", "STORE_PW",
                       "--key-password-env", "KEY_PW")  # fmt: skip
    store = tmp_path / "gen.jks"
    key_args = ["--store-password-env", "STORE_PW", "--key-password-env", "KEY_PW"]
    exported = export_cert(cli, "gen.jks", *key_args)
    assert printed["alias"] == "client-2026"

    listing = keytool("-list", "-keystore", str(store), "-storepass", STORE_PASSWORD)
    assert KEYTOOL_ENTRY.findall(listing) == ["client-2026"]
    assert KEYTOOL_SHA256.findall(listing) == [printed["sha256"]]

    def import_command(key_password: str, destination: Path) -> list[str]:
        return [
            "keytool", "-importkeystore", "-noprompt",
            "-srckeystore", str(store), "-srcstoretype", "JKS",
            "-srcstorepass", STORE_PASSWORD, "-srckeypass", key_password,
            "-srcalias", "client-2026",
            "-destkeystore", str(destination), "-deststoretype", "PKCS12",
            "-deststorepass", STORE_PASSWORD,
        ]  # fmt: skip

    converted = tmp_path / "converted.p12"
    run_tool(*import_command(KEY_PASSWORD, converted), input=b"")
    ours = only(read_keystore(store, password=STORE_PASSWORD, key_password=KEY_PASSWORD))
    theirs = only(read_keystore(converted, password=STORE_PASSWORD))
    assert pkcs8(theirs.private_key) == pkcs8(ours.private_key)
    assert pem(theirs.cert_chain[0]) == exported

    refused = subprocess.run(
        import_command("not-" + KEY_PASSWORD, tmp_path / "refused.p12"),
        input=b"",
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert refused.returncode != 0
    assert b"Cannot recover key" in refused.stdout + refused.stderr
    assert not (tmp_path / "refused.p12").exists()

    assert printed["sha256"] == colon_hex(openssl_fingerprint(exported, "sha256"))
    row = show(cli, "gen.jks", *key_args)
    assert row["alias"] == "client-2026"
    assert_show_matches_openssl(row, exported)


@pytest.mark.parametrize(
    ("alg", "key_type", "algorithm"),
    [
        ("ES256", "EC P-256", "ES256"),
        ("ES384", "EC P-384", "ES384"),
        ("ES512", "EC P-521", "ES512"),
        ("EdDSA", "Ed25519", "EdDSA"),
        ("PS256", "RSA-2048", None),  # a PEM file does not record the algorithm
    ],
)
def test_cli_pem_generate_per_algorithm_is_read_by_openssl(
    cli: CliRunner, tmp_path: Path, alg: str, key_type: str, algorithm: str | None
) -> None:
    require_tool("openssl")
    printed = generate(
        cli, "--alias", f"key-{alg}", "--out", "key.pem", "--alg", alg, "--no-password"
    )
    key_file = tmp_path / "key.pem"
    assert "-----BEGIN PRIVATE KEY-----" in key_file.read_text()  # no password: clear PKCS#8
    assert printed["algorithm"] == f"{alg} ({key_type})"
    cert_pem = one_certificate_pem(key_file.read_bytes())

    row = show(cli, "key.pem")

    assert row["key"] == key_type
    if algorithm is not None:
        assert row["algorithm"] == algorithm
    assert openssl_key_spki(key_file) == openssl_cert_spki(cert_pem)
    assert row["kid"] == printed["kid"] == openssl_kid(cert_pem)
    assert_show_matches_openssl(row, cert_pem)


def test_cli_encrypted_pem_is_decrypted_by_openssl(cli: CliRunner, tmp_path: Path) -> None:
    require_tool("openssl")
    printed = generate(cli, "--alias", "pem-key", "--out", "key.pem", "--format", "pem",
                       "--store-password-env", "PEM_PW")  # fmt: skip
    key_file = tmp_path / "key.pem"
    assert "-----BEGIN ENCRYPTED PRIVATE KEY-----" in key_file.read_text()
    cert_pem = one_certificate_pem(key_file.read_bytes())

    assert openssl_key_spki(key_file, PEM_PASSWORD) == openssl_cert_spki(cert_pem)
    assert printed["kid"] == openssl_kid(cert_pem)
    row = show(cli, "key.pem", "--store-password-env", "PEM_PW")
    assert row["key"] == "RSA-2048"
    assert_show_matches_openssl(row, cert_pem)
