"""What every keystore reader produces: :class:`KeyEntry`, and the checks all of them share.

Kept apart from the readers so that each format's module (PKCS#12, JKS, PEM, JWK) depends on
this one only. Everything here treats file content as hostile: certificates are parsed fully
up front, and any failure becomes a one-line :class:`KeystoreError` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

from cryptography import x509

from adapter.errors import KeystoreError
from adapter.jose import PrivateKey, key_type_name, unsupported_key_reason

T = TypeVar("T")


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
