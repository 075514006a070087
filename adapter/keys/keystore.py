"""Keystore readers: PKCS#12, JKS, PEM and JWK files -> :class:`KeyEntry` objects.

Ops already keep client keys in one of these formats (Keycloak's "Generate new keys" hands out
PKCS#12 or JKS; openssl writes PEM; other stacks write JWK), so the adapter reads them as they
are instead of asking for a conversion. Every failure is a :class:`KeystoreError` whose one-line
message names the file, says what is wrong and how to fix it, and never contains a password.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from adapter.config._files import KEYSTORE_LIMIT, FileRefused, read_private_file
from adapter.config.key_options import KEYSTORE_EXTENSIONS
from adapter.errors import KeystoreError
from adapter.keys._entry import (
    KeyEntry,
    PasswordNeeded,
    chain_for,
    checked_certificates,
    client_key,
    consistent,
    guarded,
    load_private_key,
    rsa_private_key,
)
from adapter.keys._jks import read_jks
from adapter.keys._pkcs12 import read_pkcs12

KEYSTORE_TYPES = ("PKCS12", "JKS", "PEM", "JWK")

_TYPE_NAMES = {
    "pkcs12": "PKCS12",
    "p12": "PKCS12",
    "pfx": "PKCS12",
    "jks": "JKS",
    "jceks": "JKS",
    "pem": "PEM",
    "jwk": "JWK",
    "jwks": "JWK",
}


def keystore_type(path: Path, declared: str | None = None) -> str:
    """The keystore type: ``declared`` in any case (``pkcs12``, ``JKS`` ...) or by extension."""
    if declared:
        name = _TYPE_NAMES.get(declared.strip().lower())
        if name is None:
            raise KeystoreError(
                f"{path}: unknown keystore type {declared!r}; use one of "
                f"{', '.join(KEYSTORE_TYPES)}"
            )
        return name
    name = KEYSTORE_EXTENSIONS.get(path.suffix.lower())
    if name is None:
        raise KeystoreError(
            f"{path}: cannot tell the keystore type from the extension {path.suffix!r}; "
            f"set the type ({', '.join(KEYSTORE_TYPES)})"
        )
    return name


def read_keystore(
    path: Path,
    *,
    type: str | None = None,
    password: str | None = None,
    key_password: str | None = None,
    certificate: Path | None = None,
) -> list[KeyEntry]:
    """Every private key in the keystore at ``path``, validated for use as a client key.

    ``password`` opens the store; ``key_password`` the keys (default: the store password).
    ``certificate`` names a PEM file with the certificate chain, for PEM keys kept apart from
    their certificate.
    """
    kind = keystore_type(path, type)
    data = read_file(path, "keystore")
    if kind == "PKCS12":
        entries = read_pkcs12(path, data, password, key_password)
    elif kind == "JKS":
        entries = read_jks(path, data, password, key_password)
    elif kind == "PEM":
        entries = [_read_pem(path, data, key_password or password)]
    else:
        entries = _read_jwk(path, data)
    if certificate is not None:
        certificates = load_pem_certificates(certificate, read_file(certificate, "certificate"))
        entries = [
            KeyEntry(
                e.alias,
                e.private_key,
                chain_for(str(certificate), e.private_key, certificates),
                e.kid,
            )
            for e in entries
        ]
    return entries


def select_entry(path: Path, entries: Sequence[KeyEntry], alias: str | None) -> KeyEntry:
    """The entry named ``alias`` (exact, then case-insensitive as Java does), or the only one.

    A file whose single key has no name (PEM, a JWK without ``kid``) matches any alias.
    """
    if alias is None or (len(entries) == 1 and entries[0].alias is None):
        if len(entries) == 1:
            return entries[0]
        names = ", ".join(repr(e.alias) for e in entries)
        raise KeystoreError(
            f"{path}: holds {len(entries)} keys ({names}); set the alias of the one to use"
        )
    exact = [e for e in entries if e.alias == alias]
    folded = [e for e in entries if e.alias is not None and e.alias.lower() == alias.lower()]
    for found in (exact, folded):
        if len(found) == 1:
            return found[0]
    names = ", ".join(repr(e.alias) for e in entries) or "none"
    raise KeystoreError(f"{path}: no key with alias {alias!r}; the aliases are {names}")


def read_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``, or a :class:`KeystoreError` that says why they cannot be read.

    Keystores and the certificates beside them are read as private files: a regular file of at
    most 1 MiB, with a warning when other users can read or change it.
    """
    try:
        return read_private_file(path, what=what, limit=KEYSTORE_LIMIT)
    except FileRefused as exc:
        if exc.missing:
            raise KeystoreError(
                f"{path}: {what} file not found; check the path (relative paths resolve "
                "against the configuration file's directory)"
            ) from None
        shown = repr(path) if exc.bad_name else str(path)
        raise KeystoreError(
            f"{shown}: cannot read the {what} file ({exc.reason}); {exc.fix}"
        ) from None


def load_pem_certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM ``data`` (possibly none), in file order, fully parsed."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    certificates = guarded(
        str(path), "a PEM certificate", lambda: x509.load_pem_x509_certificates(data)
    )
    return checked_certificates(str(path), certificates)


def _read_pem(path: Path, data: bytes, password: str | None) -> KeyEntry:
    if b"PRIVATE KEY-----" not in data:
        raise KeystoreError(
            f"{path}: no private key in this PEM file; a client keystore needs the private key "
            "(BEGIN PRIVATE KEY / RSA PRIVATE KEY / EC PRIVATE KEY)"
        )
    # Encrypted PEM says so in the clear: "ENCRYPTED PRIVATE KEY" (PKCS#8) or a
    # "Proc-Type: 4,ENCRYPTED" header (traditional). A password for a plain key is ignored.
    encrypted = (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data
    )
    if encrypted and not password:
        raise PasswordNeeded(f"{path}: the private key is encrypted", "key")
    secret = password.encode() if encrypted and password else None
    try:
        key = load_private_key(str(path), data, secret, pem=True)
    except KeystoreError:
        raise
    except ValueError:
        if encrypted:
            raise KeystoreError(
                f"{path}: cannot decrypt the private key; check the key password"
            ) from None
        raise KeystoreError(f"{path}: the private key is corrupt or not PEM") from None
    except Exception:  # cryptography raises UnsupportedAlgorithm and others for odd files
        raise KeystoreError(f"{path}: the private key is in an unsupported format") from None
    private_key = client_key(str(path), key)
    chain = chain_for(str(path), private_key, load_pem_certificates(path, data))
    return KeyEntry(None, private_key, chain)  # PEM cannot name its key


def _read_jwk(path: Path, data: bytes) -> list[KeyEntry]:
    members = _jwk_members(path, data)
    if len(members) == 1:
        return [_jwk_entry(str(path), members[0])]
    return [_jwk_entry(f"{path}: key {index}", member) for index, member in enumerate(members)]


def _jwk_members(path: Path, data: bytes) -> list[object]:
    """The keys of a JWKS file, or the one key of a JWK file (not yet checked one by one)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        document = None
    if document is None:
        raise KeystoreError(f"{path}: not valid JSON; a JWK or JWKS file is expected")
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        members: list[object] = document["keys"]
    elif isinstance(document, dict) and "kty" in document:
        members = [document]
    else:
        raise KeystoreError(f"{path}: neither a JWK (with kty) nor a JWKS (with keys)")
    if not members:
        raise KeystoreError(f"{path}: the JWKS holds no keys")
    return members


def _jwk_entry(where: str, member: object) -> KeyEntry:
    """One private JWK as a client key, with its x5c chain and its kid and alg when given."""
    if not isinstance(member, dict) or not isinstance(member.get("kty"), str):
        raise KeystoreError(f"{where}: not a JWK object with a kty member")
    if "d" not in member:
        raise KeystoreError(
            f"{where}: has no private members (d); a client key needs its private half"
        )
    key = client_key(where, _jwk_private_key(where, member["kty"], member))
    chain = chain_for(where, key, _x5c_chain(where, member.get("x5c")))
    kid = member.get("kid") if isinstance(member.get("kid"), str) else None
    alg = member.get("alg") if isinstance(member.get("alg"), str) else None
    return KeyEntry(kid, key, chain, kid, alg)


def _jwk_private_key(where: str, kty: str, member: dict[str, Any]) -> object:
    """The private key of a JWK: its members checked by the joserfc class for its key type.

    RSA numbers become a key here, through the shared fast loader (joserfc's import would run
    ``cryptography``'s slow RSA validation); EC and OKP keys are imported by joserfc. Every key
    then passes the same signature probe.
    """
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    importers: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
        "RSA": RSAKey,
        "EC": ECKey,
        "OKP": OKPKey,
    }
    importer = importers.get(kty)
    if importer is None:
        raise KeystoreError(f"{where}: key type {kty!r} is not supported; use RSA, EC or OKP")
    try:
        if importer is RSAKey:
            RSAKey.validate_dict_key(member)
            return rsa_private_key(where, _rsa_numbers(member))
        key: object = importer.import_key(member).private_key
    except KeystoreError:
        raise
    except (JoseError, ValueError, TypeError, KeyError):
        raise KeystoreError(f"{where}: the {kty} JWK is malformed") from None
    return consistent(where, key)


_RSA_CRT_MEMBERS = ("p", "q", "dp", "dq", "qi")


def _rsa_numbers(member: dict[str, Any]) -> rsa.RSAPrivateNumbers:
    """The numbers of an RSA JWK (RFC 7518 §6.3.2), as joserfc reads them.

    Raises ``ValueError`` (also for a JWK with some but not all CRT members) or ``TypeError``.
    """
    from joserfc.util import base64_to_int

    public = rsa.RSAPublicNumbers(base64_to_int(member["e"]), base64_to_int(member["n"]))
    d = base64_to_int(member["d"])
    given = [name in member for name in _RSA_CRT_MEMBERS]
    if "oth" in member or (any(given) and not all(given)):
        raise ValueError("multi-prime key, or CRT members missing")
    if all(given):
        p, q, dmp1, dmq1, iqmp = (base64_to_int(member[name]) for name in _RSA_CRT_MEMBERS)
    else:
        p, q = rsa.rsa_recover_prime_factors(public.n, public.e, d)
        dmp1, dmq1, iqmp = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public)


def _x5c_chain(where: str, x5c: object) -> list[x509.Certificate]:
    if x5c is None:
        return []
    if not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c):
        raise KeystoreError(f"{where}: x5c must be a list of base64 certificates")
    certificates = guarded(
        where,
        "a certificate in x5c",
        lambda: [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c],
    )
    return checked_certificates(where, certificates)
