"""PKCS#12 files by the kind of their MAC: absent, one we check, one we cannot check.

The reader proves the store password against the MAC itself and then reads the certificates
from a copy without key bags and without the MAC. A MAC it cannot check (PBMAC1, RFC 9579, or
an unknown hash) must therefore never count as "no MAC": such a file goes to OpenSSL, which
checks that MAC or refuses the file, as it did before the reader decrypted keys itself.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from adapter import read_keystore
from adapter.errors import KeystoreError
from adapter.keys import _der, _pkcs12
from adapter.keys._entry import PasswordNeeded
from adapter.keys._pkcs12_mac import Mac, _bmp, check_mac, pkcs12_kdf, verify_mac
from adapter.keys.generate import parse_subject, self_signed_certificate

PASSWORD = "mac-kinds-password"
KEY = ec.generate_private_key(ec.SECP256R1())
CERT = self_signed_certificate(KEY, parse_subject("CN=mac-kinds"), 5, "ES256")
# Plain key bag and plain certificates: nothing but the MAC stands between the file and a
# reader without the password.
PLAIN = pkcs12.serialize_key_and_certificates(b"mac", KEY, CERT, None, NoEncryption())

PBMAC1 = "1.2.840.113549.1.5.14"
PBKDF2 = "1.2.840.113549.1.5.12"
HMAC_SHA256 = "1.2.840.113549.2.9"
UNKNOWN_HASH = "1.3.6.1.4.1.55555.1.1"  # an arc nobody assigns a digest to
SHA256 = "2.16.840.1.101.3.4.2.1"
KEY_BAG = "1.2.840.113549.1.12.10.1.1"
SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
INTEGER, NULL = 0x02, 0x05


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    content = bytes([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.insert(0, 0x80 | (arc & 0x7F))
        content += bytes(chunk)
    return _der.Tlv(_der.OID, content).encoded()


def _seq(*parts: bytes) -> bytes:
    return _der.Tlv(_der.SEQUENCE, b"".join(parts)).encoded()


def _octets(value: bytes) -> bytes:
    return _der.Tlv(_der.OCTET_STRING, value).encoded()


def _int(value: int) -> bytes:
    return _der.Tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big")).encoded()


def _with_mac_data(data: bytes, mac_data: bytes | None) -> bytes:
    """``data`` (a PFX) with its MacData replaced by ``mac_data``, or removed."""
    version, auth_safe = _der.read_one(data, _der.SEQUENCE).children()[:2]
    return _seq(version.encoded(), auth_safe.encoded(), mac_data or b"")


def _signed(data: bytes) -> bytes:
    """The octets a PKCS#12 MAC covers: the content of the authSafe."""
    auth_safe = _der.read_one(data, _der.SEQUENCE).children()[1]
    return _der.read_one(auth_safe.children()[1].content, _der.OCTET_STRING).content


def with_pbmac1(data: bytes, password: str) -> bytes:
    """``data`` with an RFC 9579 PBMAC1 MAC (PBKDF2-HMAC-SHA256, HMAC-SHA256) by ``password``."""
    salt, iterations = b"0123456789abcdef", 2048
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    mac = hmac.new(key, _signed(data), "sha256").digest()
    prf = _seq(_oid(HMAC_SHA256), _der.Tlv(NULL, b"").encoded())
    kdf = _seq(_oid(PBKDF2), _seq(_octets(salt), _int(iterations), _int(32), prf))
    digest_info = _seq(_seq(_oid(PBMAC1), _seq(kdf, prf)), _octets(mac))
    # MacData: macSalt and iterations are unused by PBMAC1; iterations is left at its DEFAULT 1.
    return _with_mac_data(data, _seq(digest_info, _octets(b"NOT USED")))


def with_unknown_hash(data: bytes, password: str) -> bytes:
    """``data`` with a classic MAC (right for ``password``) whose hash OID nobody knows."""
    return _with_sha256_mac(data, password, hash_oid=UNKNOWN_HASH)


def _with_sha256_mac(data: bytes, password: str, hash_oid: str = SHA256) -> bytes:
    """``data`` with an RFC 7292 MAC by ``password`` (HMAC-SHA256), named ``hash_oid``."""
    salt, iterations = b"saltsaltsaltsalt", 2048
    key = pkcs12_kdf("sha256", _bmp(password), salt, 3, iterations, 32)
    mac = hmac.new(key, _signed(data), "sha256").digest()
    digest_info = _seq(_seq(_oid(hash_oid), _der.Tlv(NULL, b"").encoded()), _octets(mac))
    return _with_mac_data(data, _seq(digest_info, _octets(salt), _int(iterations)))


def with_key_password(data: bytes, key_password: str) -> bytes:
    """``data`` with its plain key bag shrouded by a password of the key's own (MAC dropped).

    What Java's ``KeyStore.setKeyEntry`` with a key password writes, made without a JDK.
    """
    encrypted = KEY.private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, BestAvailableEncryption(key_password.encode())
    )
    version, auth_safe = _der.read_one(data, _der.SEQUENCE).children()[:2]
    safes = []
    for content_info in _der.read_one(_signed(data), _der.SEQUENCE).children():
        oid, explicit = content_info.children()
        bags = []
        for bag in _der.read_one(_pkcs12._octets(explicit), _der.SEQUENCE).children():
            fields = bag.children()
            if fields[0].oid() == KEY_BAG:
                value = _der.Tlv(_der.CONTEXT_0, encrypted).encoded()
                attributes = b"".join(f.encoded() for f in fields[2:])
                bag = _der.read_one(_seq(_oid(SHROUDED_KEY_BAG), value, attributes))
            bags.append(bag.encoded())
        safes.append(_pkcs12._data_content_info(oid, _seq(*bags)).encoded())
    new_auth_safe = _pkcs12._data_content_info(auth_safe.children()[0], _seq(*safes))
    return _seq(version.encoded(), new_auth_safe.encoded())


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def no_mac_stripping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the reader makes its MAC-less copy of the file."""

    def refuse(data: bytes) -> bytes:
        raise AssertionError("a MAC that was not checked was stripped")

    monkeypatch.setattr(_pkcs12, "_without_key_bags", refuse)


UNCHECKABLE = {"pbmac1": with_pbmac1, "unknown-hash": with_unknown_hash}


def test_check_mac_tells_the_kinds_apart() -> None:
    assert check_mac(_with_mac_data(PLAIN, None), PASSWORD) is Mac.ABSENT
    assert check_mac(with_pbmac1(PLAIN, PASSWORD), PASSWORD) is Mac.UNSUPPORTED
    assert check_mac(with_unknown_hash(PLAIN, PASSWORD), PASSWORD) is Mac.UNSUPPORTED
    checked = _with_sha256_mac(PLAIN, PASSWORD)
    assert check_mac(checked, PASSWORD) is Mac.RIGHT
    assert check_mac(checked, PASSWORD + "x") is Mac.WRONG
    assert check_mac(PLAIN, "") is Mac.RIGHT  # cryptography's MAC by the empty password
    # verify_mac keeps its three answers for the callers that only need those.
    assert verify_mac(with_pbmac1(PLAIN, PASSWORD), PASSWORD) is None
    assert verify_mac(_with_mac_data(PLAIN, None), PASSWORD) is None
    assert verify_mac(checked, PASSWORD) is True
    assert verify_mac(checked, PASSWORD + "x") is False


@pytest.mark.usefixtures("no_mac_stripping")
@pytest.mark.parametrize("kind", list(UNCHECKABLE))
def test_an_uncheckable_mac_without_a_password_is_refused(tmp_path: Path, kind: str) -> None:
    path = _write(tmp_path, f"{kind}.p12", UNCHECKABLE[kind](PLAIN, PASSWORD))
    with pytest.raises(PasswordNeeded) as refused:
        read_keystore(path)
    assert refused.value.which == "store"
    assert refused.value.problem == f"{path}: the keystore is protected by a password"


@pytest.mark.usefixtures("no_mac_stripping")
@pytest.mark.parametrize("key_password", [None, "another-key-password"])
@pytest.mark.parametrize("kind", list(UNCHECKABLE))
def test_an_uncheckable_mac_with_a_wrong_password_is_refused(
    tmp_path: Path, kind: str, key_password: str | None
) -> None:
    path = _write(tmp_path, f"{kind}.p12", UNCHECKABLE[kind](PLAIN, PASSWORD))
    with pytest.raises(KeystoreError, match="wrong store password") as refused:
        read_keystore(path, password="not-" + PASSWORD, key_password=key_password)
    assert PASSWORD not in str(refused.value).replace(str(path), "")
    assert "\n" not in str(refused.value)


@pytest.mark.usefixtures("no_mac_stripping")
def test_a_pbmac1_file_opens_with_its_password_as_openssl_checks_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "pbmac1.p12", with_pbmac1(PLAIN, PASSWORD))
    try:
        pkcs12.load_pkcs12(path.read_bytes(), PASSWORD.encode())
    except ValueError:
        pytest.skip("this OpenSSL cannot verify PBMAC1 (3.4 and later can)")
    (entry,) = read_keystore(path, password=PASSWORD)
    assert entry.alias == "mac"
    assert entry.private_key.private_numbers() == KEY.private_numbers()  # type: ignore[union-attr]
    assert entry.cert_chain == (CERT,)
    # A MAC that no longer matches the contents is refused by OpenSSL, even so.
    tampered = bytearray(path.read_bytes())
    tampered[-40] ^= 1  # inside the MAC value
    tampered_path = _write(tmp_path, "tampered.p12", bytes(tampered))
    with pytest.raises(KeystoreError):
        read_keystore(tampered_path, password=PASSWORD)


@pytest.mark.usefixtures("no_mac_stripping")
def test_an_unknown_mac_hash_is_refused_even_with_the_password(tmp_path: Path) -> None:
    path = _write(tmp_path, "unknown.p12", with_unknown_hash(PLAIN, PASSWORD))
    with pytest.raises(KeystoreError, match="cannot be verified here"):
        read_keystore(path, password=PASSWORD)


def test_a_file_without_a_mac_reads_as_before(tmp_path: Path) -> None:
    """No MAC: nothing to check, so it opens without a password, as OpenSSL opens it."""
    data = _with_mac_data(PLAIN, None)
    assert pkcs12.load_pkcs12(data, None).key is not None  # what the reader did before
    path = _write(tmp_path, "no-mac.p12", data)
    for password in (None, PASSWORD):
        (entry,) = read_keystore(path, password=password)
        assert entry.private_key.private_numbers() == KEY.private_numbers()  # type: ignore[union-attr]
        assert entry.cert_chain == (CERT,)


def test_a_checked_mac_still_proves_the_password(tmp_path: Path) -> None:
    path = _write(tmp_path, "sha256.p12", _with_sha256_mac(PLAIN, PASSWORD))
    (entry,) = read_keystore(path, password=PASSWORD)
    assert entry.cert_chain == (CERT,)
    with pytest.raises(PasswordNeeded):
        read_keystore(path)
    with pytest.raises(KeystoreError, match="wrong store password"):
        read_keystore(path, password="not-" + PASSWORD)


TWO_PASSWORDS = with_key_password(PLAIN, "key-password")


def test_a_separate_key_password_is_proven_by_a_checked_mac(tmp_path: Path) -> None:
    path = _write(tmp_path, "checked.p12", _with_sha256_mac(TWO_PASSWORDS, PASSWORD))
    (entry,) = read_keystore(path, password=PASSWORD, key_password="key-password")
    assert entry.private_key.private_numbers() == KEY.private_numbers()  # type: ignore[union-attr]
    assert entry.cert_chain == (CERT,)


@pytest.mark.usefixtures("no_mac_stripping")
def test_a_separate_key_password_with_an_uncheckable_mac_is_refused(tmp_path: Path) -> None:
    """The store password of a key with its own password is proven by the MAC alone (OpenSSL
    decrypts the key with the store password and fails): with PBMAC1, the file is refused in
    a line, never read as a file without a MAC."""
    path = _write(tmp_path, "pbmac1.p12", with_pbmac1(TWO_PASSWORDS, PASSWORD))
    with pytest.raises(KeystoreError, match="cannot be verified here") as refused:
        read_keystore(path, password=PASSWORD, key_password="key-password")
    assert "key-password" not in str(refused.value)
