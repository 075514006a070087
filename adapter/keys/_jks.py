"""JKS / JCEKS keystores, through the optional ``pyjks`` package (``oidc-adapter[jks]``).

pyjks 20.0 cannot decrypt private keys written by a current JDK keytool (the key's
AlgorithmIdentifier has no parameters, which its ASN.1 spec rejects), so entries are loaded
still encrypted and the JKS key blob is unwrapped here with pyjks' own cipher function.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509

from adapter.errors import KeystoreError
from adapter.keys import _der
from adapter.keys._entry import (
    KeyEntry,
    PasswordNeeded,
    chain_for,
    checked_certificates,
    client_key,
    guarded,
    load_private_key,
)

_SUN_JKS_KEY_PROTECTOR = "1.3.6.1.4.1.42.2.17.1.1"
_EXTRA_HINT = "install the extra: pip install 'oidc-adapter[jks]'"


def _pyjks(path: Path) -> Any:
    try:
        import jks
    except ImportError:
        raise KeystoreError(f"{path}: reading JKS keystores needs pyjks; {_EXTRA_HINT}") from None
    return jks


def read_jks(
    path: Path, data: bytes, password: str | None, key_password: str | None
) -> list[KeyEntry]:
    """Every private key entry of a JKS or JCEKS keystore."""
    jks = _pyjks(path)
    if password is None:
        raise PasswordNeeded(f"{path}: a JKS keystore needs its store password", "store")
    try:
        store = jks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        raise KeystoreError(f"{path}: wrong store password; check the store password") from None
    except Exception:
        raise KeystoreError(f"{path}: not a JKS keystore (corrupt, or another type)") from None
    entries = []
    for alias, entry in store.private_keys.items():
        where = f"{path}: key {alias!r}"
        pkcs8 = _decrypt(path, jks, alias, entry, key_password or password)
        key = guarded(where, "the private key", partial(load_private_key, where, pkcs8, None))
        ders = [der for _, der in entry.cert_chain]
        certificates = guarded(where, "the certificate chain", partial(_certificates, ders))
        private_key = client_key(where, key)
        chain = chain_for(where, private_key, checked_certificates(where, certificates))
        entries.append(KeyEntry(alias, private_key, chain))
    if not entries:
        raise KeystoreError(f"{path}: the keystore holds no private key entry")
    return entries


def _certificates(ders: list[bytes]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(der) for der in ders]


def _decrypt(path: Path, jks: Any, alias: str, entry: Any, key_password: str) -> bytes:
    wrong = KeystoreError(f"{path}: cannot decrypt key {alias!r}; check the key password")
    try:
        algorithm, encrypted = _der.read_one(entry._encrypted, _der.SEQUENCE).children()
        oid = algorithm.children()[0].oid()
    except (ValueError, IndexError):
        raise KeystoreError(f"{path}: entry {alias!r} is corrupt") from None
    if oid == _SUN_JKS_KEY_PROTECTOR:
        try:
            return bytes(jks.sun_crypto.jks_pkey_decrypt(encrypted.content, key_password))
        except jks.util.BadHashCheckException:
            raise wrong from None
    try:  # JCEKS protection carries parameters, which pyjks parses itself
        entry.decrypt(key_password)
    except jks.util.DecryptionFailureException:
        raise wrong from None
    except Exception:
        raise KeystoreError(f"{path}: entry {alias!r} uses an unsupported protection") from None
    return bytes(entry.pkey_pkcs8)


def jks_bytes(
    path: Path,
    alias: str,
    pkcs8_der: bytes,
    chain_der: list[bytes],
    store_password: str,
    key_password: str,
) -> bytes:
    """A JKS keystore with one key entry, as keytool reads it (``path`` is for messages)."""
    jks = _pyjks(path)
    entry = jks.PrivateKeyEntry.new(alias, chain_der, pkcs8_der, "pkcs8")
    entry.encrypt(key_password)  # saves() would otherwise use the store password
    store = jks.KeyStore.new("jks", [entry])
    return bytes(store.saves(store_password))
