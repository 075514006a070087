"""PKCS#12 (``.p12`` / ``.pfx``) reading, including files holding several keys.

``cryptography.load_pkcs12`` checks the password (MAC) and returns every certificate, but only
the first private key. keytool keystores often hold several keys (old and new), so the key bags
are walked here to get each key with its alias (``friendlyName``); the certificates still come
from ``cryptography``. Files from keytool, ``openssl pkcs12 -export`` (also ``-legacy``) and our
own ``keys generate`` read alike.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    load_der_private_key,
    pkcs12,
)

from adapter.errors import KeystoreError
from adapter.jose import PrivateKey
from adapter.keys import _der
from adapter.keys._entry import (
    KeyEntry,
    PasswordNeeded,
    chain_for,
    checked_certificates,
    client_key,
)
from adapter.keys._pkcs12_mac import verify_mac

_DATA = "1.2.840.113549.1.7.1"
_KEY_BAG = "1.2.840.113549.1.12.10.1.1"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_FRIENDLY_NAME = "1.2.840.113549.1.9.20"


def read_pkcs12(
    path: Path, data: bytes, password: str | None, key_password: str | None
) -> list[KeyEntry]:
    """Every private key in a PKCS#12 file with its alias and certificate chain."""
    try:
        bags = _key_bags(data)
    except (ValueError, IndexError):  # malformed structure: short or wrongly typed elements
        raise KeystoreError(f"{path}: not a PKCS#12 keystore (corrupt, or another type)") from None
    loaded = _load(path, data, password, key_password)
    certificates = [c.certificate for c in loaded.additional_certs]
    if loaded.cert is not None:
        certificates.insert(0, loaded.cert.certificate)
    certificates = checked_certificates(str(path), certificates)
    if not bags and loaded.key is not None:
        # The key sits in an encrypted bag this walker does not open; cryptography did.
        name = loaded.cert.friendly_name if loaded.cert is not None else None
        bags = [(name.decode("utf-8", "replace") if name else None, None)]
    entries = []
    for alias, der in bags:
        if der is None:
            key: object = loaded.key
        else:
            # cryptography opened the single key with the store password already; that also
            # covers an empty password, which load_der_private_key reads as "no password".
            fallback = loaded.key if len(bags) == 1 else None
            key = _decrypt_key(path, alias, der, key_password, password, fallback)
        where = f"{path}: key {alias!r}"
        private_key = client_key(where, key)
        entries.append(KeyEntry(alias, private_key, _own_chain(where, private_key, certificates)))
    if not entries:
        raise KeystoreError(f"{path}: the keystore holds no private key")
    return entries


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
    try:
        mac_ok = verify_mac(data, password)
    except (ValueError, IndexError):
        mac_ok = False
    own_key_password = bool(key_password) and key_password != password
    if mac_ok and not own_key_password:
        raise PasswordNeeded(
            f"{path}: the store password is right but the key has its own password", "key"
        )
    if mac_ok is not False and own_key_password:
        try:
            return pkcs12.load_pkcs12(_without_key_bags(data), store_secret)
        except (ValueError, IndexError):
            pass
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
    fallback: object,
) -> object:
    """The key of one bag: tried with the key password, the store password, then none.

    The last try is for a plain (unencrypted) key bag, which refuses any password.
    """
    candidates = [p.encode() for p in (key_password, store_password) if p]
    for candidate in [*dict.fromkeys(candidates), None]:
        try:
            return load_der_private_key(der, candidate)
        except (ValueError, TypeError):
            continue
        except Exception:
            raise KeystoreError(
                f"{path}: key {alias!r} uses an unsupported key type or encryption"
            ) from None
    if fallback is not None:
        return fallback
    raise KeystoreError(f"{path}: cannot decrypt key {alias!r}; check the key password")


def _key_bags(data: bytes) -> list[tuple[str | None, bytes | None]]:
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
    bags: list[tuple[str | None, bytes | None]] = []
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
