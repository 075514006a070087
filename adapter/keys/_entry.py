"""What every keystore reader produces: :class:`KeyEntry`, and the checks all of them share.

Kept apart from the readers so that each format's module (PKCS#12, JKS, PEM, JWK) depends on
this one only. Everything here treats file content as hostile: certificates are parsed fully
up front, and any failure becomes a one-line :class:`KeystoreError` naming the file.

Every reader loads its private keys through :func:`load_private_key` (PEM, DER) or
:func:`rsa_private_key` (JWK numbers): without ``cryptography``'s RSA key validation, whose
primality tests cost 60 to 110 ms per RSA-2048 key (seconds at start-up for an application
with hundreds of tenant keys), and with :func:`consistent` instead: the arithmetic of the key's
parts and a signature probe, about 1.5 ms a key (figures from docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import lcm
from typing import TYPE_CHECKING, TypeVar, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import (
    load_der_private_key,
    load_pem_private_key,
)

from adapter.errors import KeystoreError
from adapter.jose import PrivateKey, key_type_name, unsupported_key_reason

if TYPE_CHECKING:
    from cryptography import x509

T = TypeVar("T")

_PROBE = b"oidc-adapter: does this key sign what its public key verifies?"


@dataclass(frozen=True, repr=False)
class KeyEntry:
    """One private key from a keystore, with its certificate chain (leaf first, may be empty).

    ``kid`` and ``alg`` are set only when the keystore itself names them (a JWK's members);
    otherwise the key ring computes Keycloak's default kid and the key type's algorithm. The
    repr shows the alias and key type, never key material.
    """

    alias: str | None
    private_key: PrivateKey
    cert_chain: tuple[x509.Certificate, ...] = ()
    kid: str | None = None
    alg: str | None = None  # a JWK's own ``alg`` member, used when the configuration has none

    def __repr__(self) -> str:
        return (
            f"KeyEntry(alias={self.alias!r}, key={key_type_name(self.private_key)!r}, "
            f"certificates={len(self.cert_chain)})"
        )


class PasswordNeeded(KeystoreError):
    """A store or key that cannot be opened without a password nobody gave.

    The reader knows the file, not where its password is configured: whoever does (the key
    loader, a command with its options) names that field in its own message. ``which`` is
    ``"store"`` or ``"key"``.
    """

    def __init__(self, problem: str, which: str) -> None:
        self.problem, self.which = problem, which
        super().__init__(f"{problem}; give its password")


class InconsistentKey(KeystoreError):
    """A private key whose parts do not match: it would sign what its public key rejects."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"{where}: the private key is inconsistent (its parts do not match); export the "
            "key again from where it was made"
        )


def load_private_key(
    where: str, data: bytes, password: bytes | None, *, pem: bool = False
) -> object:
    """The private key in DER (PKCS#8, also encrypted) or PEM ``data``, then :func:`consistent`.

    The keys come from the operator's own keystores, so ``cryptography``'s slow RSA validation
    (primality tests) is skipped and the signature probe stands in for it. Failures to load
    raise ``cryptography``'s own exceptions (``ValueError`` for bad bytes or a wrong password,
    ``TypeError`` for a missing or unexpected password, ``UnsupportedAlgorithm``), for the
    reader to word; a key that loads but fails the probe raises :class:`InconsistentKey`.
    """
    load = load_pem_private_key if pem else load_der_private_key
    return consistent(where, load(data, password, unsafe_skip_rsa_key_validation=True))


def rsa_private_key(where: str, numbers: rsa.RSAPrivateNumbers) -> rsa.RSAPrivateKey:
    """The RSA key of ``numbers`` (a JWK's members), as :func:`load_private_key` loads keys.

    ``cryptography`` still checks the ranges of the numbers (``ValueError``).
    """
    return consistent(where, numbers.private_key(unsafe_skip_rsa_key_validation=True))


def consistent(where: str, key: T) -> T:
    """``key``, once it has signed a fixed message that its own public key verifies.

    RSA parts are first checked against each other (n = pq, the CRT values and e·d ≡ 1 derived
    from p, q and d: OpenSSL's key check without the primality tests): OpenSSL repairs a wrong
    CRT part while signing, and malformed numbers must not reach its arithmetic at all. Keys
    that cannot be client keys are left to :func:`client_key`, which refuses them by name.
    """
    if unsupported_key_reason(key) is not None:
        return key
    try:
        matches = _signature_verifies(key)
    except Exception:  # whatever OpenSSL makes of a broken key; its message may quote numbers
        matches = False
    if not matches:
        raise InconsistentKey(where)
    return key


def _signature_verifies(key: object) -> bool:
    if isinstance(key, rsa.RSAPrivateKey):
        if not _rsa_parts_match(key.private_numbers()):
            return False
        pkcs1 = padding.PKCS1v15()
        signature = key.sign(_PROBE, pkcs1, hashes.SHA256())
        key.public_key().verify(signature, _PROBE, pkcs1, hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(hashes.SHA256())
        key.public_key().verify(key.sign(_PROBE, ecdsa), _PROBE, ecdsa)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        key.public_key().verify(key.sign(_PROBE), _PROBE)
    return True  # verify() raises InvalidSignature otherwise


def _rsa_parts_match(numbers: rsa.RSAPrivateNumbers) -> bool:
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    p, q, d = numbers.p, numbers.q, numbers.d
    return (
        p > 2
        and q > 2
        and p % 2 == q % 2 == e % 2 == 1
        and p * q == n
        and 2 < e < n
        and 1 < d < n
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and 0 < numbers.iqmp < p
        and numbers.iqmp * q % p == 1
        and (e * d - 1) % lcm(p - 1, q - 1) == 0
    )


def client_key(where: str, key: object) -> PrivateKey:
    """``key`` typed as a client key, or a :class:`KeystoreError` saying why it cannot be one."""
    problem = unsupported_key_reason(key)
    if problem:
        raise KeystoreError(f"{where}: {problem}")
    return cast(PrivateKey, key)


def guarded(where: str, what: str, parse: Callable[[], T]) -> T:
    """Run a parser over untrusted bytes; any failure is a KeystoreError about ``what``.

    ``cryptography`` and ``pyjks`` raise a variety of exception types on malformed input
    (``ValueError``, ``UnsupportedAlgorithm``, ``InvalidVersion``, ``IndexError`` ...); the user
    needs one answer: this part of this file is unreadable.
    """
    try:
        return parse()
    except KeystoreError:
        raise
    except Exception:  # raised outside this block: the parser's exception may quote the input
        error = KeystoreError(f"{where}: {what} is corrupt or unsupported")
    raise error


def checked_certificates(
    where: str, certificates: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """Certificates whose key, subject and issuer parse (``cryptography`` parses lazily)."""

    def parse_all() -> list[x509.Certificate]:
        for certificate in certificates:
            certificate.public_key()
            certificate.subject.rfc4514_string()
            certificate.issuer.rfc4514_string()
        return list(certificates)

    return guarded(where, "a certificate", parse_all)


def chain_for(
    where: str, private_key: PrivateKey, certificates: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """The chain for ``private_key`` out of a bag of certificates: its leaf, then issuers.

    Keystores store certificates in no reliable order (PKCS#12 especially), so the leaf is found
    by public key and each next link by issuer name. Certificates that include none for this
    key are an error: publishing the key without its certificate would hide the mistake.
    """
    public = private_key.public_key()
    leaf = next((c for c in certificates if c.public_key() == public), None)
    if leaf is None:
        if certificates:
            raise KeystoreError(
                f"{where}: no certificate matches the private key; store the certificate "
                "issued for this key"
            )
        return ()
    chain = [leaf]
    while chain[-1].issuer != chain[-1].subject:
        issuer = next(
            (c for c in certificates if c.subject == chain[-1].issuer and c not in chain), None
        )
        if issuer is None:
            break
        chain.append(issuer)
    return tuple(chain)
