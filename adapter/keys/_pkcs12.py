"""PKCS#12 (``.p12`` / ``.pfx``) reading, including files holding several keys.

keytool keystores often hold several keys (old and new), and ``cryptography.load_pkcs12``
returns only the first, so the key bags are walked here to get each key with its alias
(``friendlyName``). The store password is checked against the MAC, the certificates come from
``cryptography`` reading a copy of the file without its key bags, and each key is decrypted on
its own and loaded by the shared fast loader (``_entry.load_private_key``): ``load_pkcs12``
would also run the slow RSA key validation on the first key. Files this way cannot open (a MAC
this reader cannot check, such as PBMAC1; a key no given password opens; keys inside encrypted
parts) are read the way ``cryptography`` reads them, which also checks such a MAC or refuses
the file, and words the errors. Files from keytool, ``openssl pkcs12 -export`` (also
``-legacy``) and our own ``keys generate`` read alike.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from adapter.errors import KeystoreError
from adapter.jose import PrivateKey
from adapter.keys import _der
from adapter.keys._entry import (
    InconsistentKey,
    KeyEntry,
    PasswordNeeded,
    chain_for,
    checked_certificates,
    client_key,
    consistent,
    load_private_key,
)
from adapter.keys._pkcs12_mac import Mac, check_mac

_DATA = "1.2.840.113549.1.7.1"
_KEY_BAG = "1.2.840.113549.1.12.10.1.1"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_FRIENDLY_NAME = "1.2.840.113549.1.9.20"

Bag = tuple[str | None, bytes]  # (alias, EncryptedPrivateKeyInfo or PrivateKeyInfo DER)
Opened = tuple[list[x509.Certificate], list[tuple[str | None, object]]]


def read_pkcs12(
    path: Path, data: bytes, password: str | None, key_password: str | None
) -> list[KeyEntry]:
    """Every private key in a PKCS#12 file with its alias and certificate chain."""
    try:
        bags = _key_bags(data)
    except (ValueError, IndexError):  # malformed structure: short or wrongly typed elements
        raise KeystoreError(f"{path}: not a PKCS#12 keystore (corrupt, or another type)") from None
    opened = _open_by_mac(path, data, bags, password, key_password)
    if opened is None:
        opened = _open_with_cryptography(path, data, bags, password, key_password)
    certificates = checked_certificates(str(path), opened[0])
    entries = []
    for alias, key in opened[1]:
        where = f"{path}: key {alias!r}"
        private_key = client_key(where, key)
        entries.append(KeyEntry(alias, private_key, _own_chain(where, private_key, certificates)))
    if not entries:
        raise KeystoreError(f"{path}: the keystore holds no private key")
    return entries


def _open_by_mac(
    path: Path, data: bytes, bags: list[Bag], password: str | None, key_password: str | None
) -> Opened | None:
    """Certificates and keys, with the store password proven by the MAC alone; ``None`` when
    this way cannot tell (the file then goes to :func:`_open_with_cryptography`).

    A key that opens but fails the signature probe is refused here.
    """
    if not bags or not _store_password_right(data, password):
        return None
    try:
        store_secret = password.encode() if password is not None else None
        loaded = pkcs12.load_pkcs12(_without_key_bags(data), store_secret)
    except Exception:  # any trouble with the certificates: the other way decides and words it
        return None
    keys: list[tuple[str | None, object]] = []
    for alias, der in bags:
        try:
            key = _decrypt_key(path, alias, der, key_password, password)
        except InconsistentKey:
            raise
        except KeystoreError:  # unsupported: the other way words it
            return None
        if key is None:
            return None
        keys.append((alias, key))
    return _certificates(loaded), keys


def _store_password_right(data: bytes, password: str | None) -> bool:
    """Whether the MAC proves ``password``; without a password, whether the file has no MAC or
    one made with the empty password (as ``cryptography`` writes unencrypted files).

    A MAC this reader cannot check (PBMAC1, an unknown hash) proves nothing: such a file goes
    to :func:`_open_with_cryptography`, where OpenSSL checks the MAC or refuses the file. It is
    never read as one without a MAC, which :func:`_without_key_bags` would strip unchecked.
    """
    wanted = {Mac.RIGHT, Mac.ABSENT} if password is None else {Mac.RIGHT}
    return _mac(data, password or "") in wanted


def _mac(data: bytes, password: str) -> Mac | None:
    """:func:`check_mac`, with ``None`` for a malformed structure."""
    try:
        return check_mac(data, password)
    except (ValueError, IndexError):
        return None


def _open_with_cryptography(
    path: Path, data: bytes, bags: list[Bag], password: str | None, key_password: str | None
) -> Opened:
    """Certificates and keys, with the store opened by ``cryptography`` (see :func:`_load`).

    The way for files :func:`_open_by_mac` cannot open, and for every wrong password: its
    errors are the ones users see.
    """
    loaded = _load(path, data, password, key_password)
    found: list[tuple[str | None, bytes | None]] = list(bags)
    if not found and loaded.key is not None:
        # The key sits in an encrypted bag this walker does not open; cryptography did.
        name = loaded.cert.friendly_name if loaded.cert is not None else None
        found = [(name.decode("utf-8", "replace") if name else None, None)]
    keys: list[tuple[str | None, object]] = []
    for alias, der in found:
        key = _decrypt_key(path, alias, der, key_password, password) if der is not None else None
        if key is None and len(found) == 1 and loaded.key is not None:
            # cryptography opened the single key with the store password already; that also
            # covers an empty password, which load_der_private_key reads as "no password".
            key = consistent(f"{path}: key {alias!r}", loaded.key)
        if key is None:
            raise KeystoreError(f"{path}: cannot decrypt key {alias!r}; check the key password")
        keys.append((alias, key))
    return _certificates(loaded), keys


def _certificates(loaded: pkcs12.PKCS12KeyAndCertificates) -> list[x509.Certificate]:
    certificates = [c.certificate for c in loaded.additional_certs]
    if loaded.cert is not None:
        certificates.insert(0, loaded.cert.certificate)
    return certificates


def _load(
    path: Path, data: bytes, password: str | None, key_password: str | None
) -> pkcs12.PKCS12KeyAndCertificates:
    """The certificates (and first key) as ``cryptography`` reads them.

    cryptography decrypts every bag with the store password, which fails for a key that has a
    password of its own. Then the store password is checked against the MAC alone, and the
    certificates are read from a copy of the file without its key bags; the keys are decrypted
    with the key password by the caller.
    """
    store_secret = password.encode() if password is not None else None
    try:
        return pkcs12.load_pkcs12(data, store_secret)
    except ValueError:
        pass
    if password is None:
        raise PasswordNeeded(f"{path}: the keystore is protected by a password", "store")
    mac = _mac(data, password)
    own_key_password = bool(key_password) and key_password != password
    if mac is Mac.RIGHT and not own_key_password:
        raise PasswordNeeded(
            f"{path}: the store password is right but the key has its own password", "key"
        )
    if mac in (Mac.RIGHT, Mac.ABSENT) and own_key_password:
        # The copy has no MAC: only a MAC proven right (or none at all) may be dropped.
        try:
            return pkcs12.load_pkcs12(_without_key_bags(data), store_secret)
        except (ValueError, IndexError):
            pass
    if mac is Mac.UNSUPPORTED:
        raise KeystoreError(
            f"{path}: wrong store password, or an integrity check (MAC algorithm) that cannot"
            " be verified here; check the store password, or export with a SHA-256 MAC"
        )
    raise KeystoreError(
        f"{path}: wrong store password, or the file is corrupt; check the store password"
    )


def _without_key_bags(data: bytes) -> bytes:
    """The PFX with its key bags and MAC removed: what is left is certificates only."""
    pfx = _der.read_one(data, _der.SEQUENCE).children()
    safes = _der.read_one(_octets(pfx[1].children()[1]), _der.SEQUENCE).children()
    kept = []
    for content_info in safes:
        parts = content_info.children()
        if parts[0].oid() == _DATA:
            bags = _der.read_one(_octets(parts[1]), _der.SEQUENCE).children()
            others = [b for b in bags if b.children()[0].oid() not in (_KEY_BAG, _SHROUDED_KEY_BAG)]
            inner = _der.Tlv(_der.SEQUENCE, b"".join(b.encoded() for b in others)).encoded()
            content_info = _data_content_info(parts[0], inner)
        kept.append(content_info)
    auth_safe = _der.Tlv(_der.SEQUENCE, b"".join(c.encoded() for c in kept)).encoded()
    new_pfx = pfx[0].encoded() + _data_content_info(pfx[1].children()[0], auth_safe).encoded()
    return _der.Tlv(_der.SEQUENCE, new_pfx).encoded()


def _data_content_info(oid: _der.Tlv, octets: bytes) -> _der.Tlv:
    """ContentInfo { data, [0] EXPLICIT OCTET STRING octets }."""
    wrapped = _der.Tlv(_der.CONTEXT_0, _der.Tlv(_der.OCTET_STRING, octets).encoded())
    return _der.Tlv(_der.SEQUENCE, oid.encoded() + wrapped.encoded())


def _own_chain(
    where: str, private_key: PrivateKey, certificates: list[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """The key's chain; in a store with several keys, the others' certificates are no error."""
    public = private_key.public_key()
    if any(c.public_key() == public for c in certificates):
        return chain_for(where, private_key, certificates)
    return chain_for(where, private_key, [])


def _decrypt_key(
    path: Path,
    alias: str | None,
    der: bytes,
    key_password: str | None,
    store_password: str | None,
) -> object | None:
    """The key of one bag, tried with the key password, the store password, then none; ``None``
    when none of them opens it.

    The last try is for a plain (unencrypted) key bag, which refuses any password. The key is
    loaded by the shared fast loader, signature probe included.
    """
    where = f"{path}: key {alias!r}"
    candidates = [p.encode() for p in (key_password, store_password) if p]
    for candidate in [*dict.fromkeys(candidates), None]:
        try:
            return load_private_key(where, der, candidate)
        except KeystoreError:
            raise
        except (ValueError, TypeError):
            continue
        except Exception:
            raise KeystoreError(
                f"{path}: key {alias!r} uses an unsupported key type or encryption"
            ) from None
    return None


def _key_bags(data: bytes) -> list[Bag]:
    """(alias, DER) of each key bag in the unencrypted parts of the file.

    The DER is an EncryptedPrivateKeyInfo (shrouded bag) or a PrivateKeyInfo (plain bag); both
    load with ``load_der_private_key``. Raises ``ValueError`` when the structure is not PKCS#12.
    """
    pfx = _der.read_one(data, _der.SEQUENCE).children()
    if len(pfx) < 2:
        raise ValueError("not a PFX")
    auth_safe = pfx[1].children()
    if auth_safe[0].oid() != _DATA:
        return []  # public-key-protected PFX: let cryptography decide
    safes = _der.read_one(_octets(auth_safe[1]), _der.SEQUENCE).children()
    bags: list[Bag] = []
    for content_info in safes:
        parts = content_info.children()
        if parts[0].oid() != _DATA:
            continue  # encryptedData: certificates, by every common writer
        for bag in _der.read_one(_octets(parts[1]), _der.SEQUENCE).children():
            fields = bag.children()
            if fields[0].oid() not in (_KEY_BAG, _SHROUDED_KEY_BAG):
                continue
            value = _der.read_one(fields[1].content).encoded()
            alias = _friendly_name(fields[2]) if len(fields) > 2 else None
            bags.append((alias, value))
    return bags


def _octets(explicit: _der.Tlv) -> bytes:
    """The content of ``[0] EXPLICIT OCTET STRING``."""
    return _der.read_one(explicit.content, _der.OCTET_STRING).content


def _friendly_name(attributes: _der.Tlv) -> str | None:
    for attribute in attributes.children():
        oid, values = attribute.children()
        if oid.oid() == _FRIENDLY_NAME:
            return values.children()[0].content.decode("utf-16-be")
    return None
