"""The key ring: the immutable set of client keys, their rotation states and the public JWKS.

A ring is built once from loaded keystore entries and never changes; rotation happens by
building a new ring (reload) or by time passing (``activate-at``). Everything a request needs is
computed here up front: the JWKS bytes and ETag that ``/k_jwks`` serves, and a timeline that
answers "which key signs now?" with one bisect.

Keys by use: signing keys (:class:`SigningKey`, ``use: sig``) and encryption keys
(:class:`EncryptionKey`, ``use: enc``: the server encrypts ID tokens to them, the client
decrypts) share the states and the JWKS. Only signing keys sign, and exactly one of them at any
instant; encryption keys are published (``next`` and ``active``, always with their ``alg``:
Keycloak selects a client's encryption key by ``alg``) and decrypt in every state; one
configured ``retired`` is no longer published but still decrypts until it leaves the
configuration.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapter.config.key_options import KeyState
from adapter.errors import ConfigError
from adapter.jose import (
    PrivateKey,
    PublicKey,
    Signer,
    b64std,
    b64url,
    key_type_name,
    make_signer,
)

if TYPE_CHECKING:
    from cryptography import x509

_EARLIEST = -math.inf


def default_kid(public_key: PublicKey) -> str:
    """Keycloak's kid: base64url(SHA-256(DER SubjectPublicKeyInfo)).

    The same key imported into Keycloak as a certificate gets the same kid, so the server
    finds the key named in an assertion header without a JWKS refetch.
    """
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return b64url(hashlib.sha256(spki).digest())


def public_jwk(public_key: PublicKey) -> dict[str, str]:
    """The public members of a key's JWK (RFC 7518 §6), in a fixed order."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        size = (public_key.curve.key_size + 7) // 8
        point = public_key.public_numbers()
        crv = key_type_name(public_key).removeprefix("EC ")
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url(point.x.to_bytes(size, "big")),
            "y": b64url(point.y.to_bytes(size, "big")),
        }
    assert isinstance(public_key, ed25519.Ed25519PublicKey)
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def certificate_thumbprint(certificate: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    """``x5t`` (SHA-1) or ``x5t#S256`` (SHA-256): base64url of the certificate's fingerprint."""
    return b64url(certificate.fingerprint(algorithm))


def published_jwk(
    private_key: PrivateKey,
    kid: str,
    use: str,
    alg: str,
    cert_chain: tuple[x509.Certificate, ...],
) -> dict[str, Any]:
    """A client key as ``/k_jwks`` publishes it: its public members, ``kid``, ``use``, always
    ``alg`` (Keycloak picks encryption keys by it), and its certificate chain with both
    thumbprints when it has one."""
    members = public_jwk(private_key.public_key())
    jwk: dict[str, Any] = {"kty": members.pop("kty"), "kid": kid, "use": use, "alg": alg}
    jwk.update(members)
    if cert_chain:
        jwk["x5c"] = [b64std(c.public_bytes(Encoding.DER)) for c in cert_chain]
        jwk["x5t"] = certificate_thumbprint(cert_chain[0], hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition (RFC 7515 §4.1.7)
        jwk["x5t#S256"] = certificate_thumbprint(cert_chain[0], hashes.SHA256())
    return jwk


@dataclass(frozen=True, repr=False, eq=False)
class SigningKey:
    """One client key: what it signs with, how it is named, where it stands in rotation.

    ``state`` is the configured state; the effective state at an instant comes from the ring
    (a key with ``activate_at`` is ``next`` until then). The repr never shows key material.
    """

    kid: str
    alg: str
    private_key: PrivateKey
    cert_chain: tuple[x509.Certificate, ...] = ()
    state: KeyState = KeyState.ACTIVE
    activate_at: datetime | None = None
    source: str = ""
    _signer: Signer = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_signer", make_signer(self.alg, self.private_key))

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of ``data`` with this key and algorithm."""
        return self._signer(data)

    @property
    def x5t(self) -> str | None:
        """SHA-1 thumbprint of the certificate, or ``None`` without one."""
        if not self.cert_chain:
            return None
        return certificate_thumbprint(self.cert_chain[0], hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition (RFC 7515 §4.1.7)

    @property
    def x5t_s256(self) -> str | None:
        """SHA-256 thumbprint of the certificate, or ``None`` without one."""
        if not self.cert_chain:
            return None
        return certificate_thumbprint(self.cert_chain[0], hashes.SHA256())

    def public_jwk(self) -> dict[str, Any]:
        """The JWK this key is published as at ``/k_jwks``: public members only."""
        return published_jwk(self.private_key, self.kid, "sig", self.alg, self.cert_chain)

    def __repr__(self) -> str:
        return (
            f"SigningKey(kid={self.kid!r}, alg={self.alg!r}, "
            f"key={key_type_name(self.private_key)!r}, state={self.state.value!r})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class EncryptionKey:
    """One client encryption key (``use = "enc"``): the server encrypts to its public half
    with ``alg`` (a key-management algorithm), the client decrypts with it. It never signs.
    ``state`` is the configured state; the repr never shows key material."""

    kid: str
    alg: str
    private_key: PrivateKey
    cert_chain: tuple[x509.Certificate, ...] = ()
    state: KeyState = KeyState.ACTIVE
    activate_at: datetime | None = None
    decrypt_until: datetime | None = None  # a retired key: it decrypts nothing after this
    source: str = ""

    def decrypts_at(self, now: datetime) -> bool:
        """Whether it still decrypts at ``now`` (a retired key past ``decrypt_until`` does not:
        tokens encrypted to it before its retirement have expired by then)."""
        return self.decrypt_until is None or now < self.decrypt_until

    @property
    def published(self) -> bool:
        """Whether ``/k_jwks`` offers it: a key configured ``retired`` only decrypts what is
        still on its way to it (the server picks an encryption key by alg, so a published one
        could still be chosen)."""
        return self.state is not KeyState.RETIRED

    def public_jwk(self) -> dict[str, Any]:
        """The JWK this key is published as: public members, ``use: enc`` and ``alg``."""
        return published_jwk(self.private_key, self.kid, "enc", self.alg, self.cert_chain)

    def __repr__(self) -> str:
        return (
            f"EncryptionKey(kid={self.kid!r}, alg={self.alg!r}, "
            f"key={key_type_name(self.private_key)!r}, state={self.state.value!r})"
        )


ClientKey = SigningKey | EncryptionKey


class KeyRing:
    """An immutable set of client keys with exactly one active signer at any instant.

    Construction validates the whole set (unique kids across both uses; among the signing
    keys: at most one configured ``active``, no two activating at the same instant, an active
    one now) and renders the JWKS bytes and their ETag once: the signing keys, then the
    published encryption keys. "Which key signs now" is one bisect over activation times. A
    ring of encryption keys only (a client authenticating with a secret) has no signer.
    """

    __slots__ = ("_activations", "_enc_keys", "_etag", "_jwks_bytes", "_keys", "_timeline")

    def __init__(self, keys: Sequence[ClientKey], *, now: datetime | None = None) -> None:
        _check_unique_kids(keys)
        self._keys: tuple[SigningKey, ...] = tuple(k for k in keys if isinstance(k, SigningKey))
        self._enc_keys: tuple[EncryptionKey, ...] = tuple(
            k for k in keys if isinstance(k, EncryptionKey)
        )
        timeline = sorted(
            (when, index, key)
            for index, key in enumerate(self._keys)
            if (when := _activation_time(key)) is not None
        )
        self._timeline: tuple[SigningKey, ...] = tuple(key for _, _, key in timeline)
        self._activations: tuple[float, ...] = tuple(when for when, _, _ in timeline)
        _check_timeline(self._timeline, self._activations)
        if self._keys and self.active_at(now or datetime.now(UTC)) is None:
            raise ConfigError(
                'credentials.keys: no key is active now; mark one key state = "active" or '
                "give one an activate-at in the past"
            )
        published = [k.public_jwk() for k in self._keys]
        published += [k.public_jwk() for k in self._enc_keys if k.published]
        jwks = {"keys": published}
        self._jwks_bytes = json.dumps(jwks, separators=(",", ":")).encode("ascii")
        self._etag = '"' + b64url(hashlib.sha256(self._jwks_bytes).digest()[:18]) + '"'

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every signing key, in configuration order (the order of the JWKS)."""
        return self._keys

    @property
    def encryption_keys(self) -> tuple[EncryptionKey, ...]:
        """Every encryption key, in configuration order (published after the signing keys)."""
        return self._enc_keys

    @property
    def jwks_bytes(self) -> bytes:
        """The public JWKS exactly as ``/k_jwks`` serves it."""
        return self._jwks_bytes

    @property
    def etag(self) -> str:
        """A strong ETag of :attr:`jwks_bytes`."""
        return self._etag

    def active_at(self, now: datetime) -> SigningKey | None:
        """The key that signs at ``now`` (timezone-aware): the most recently activated one."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return self._active_at_timestamp(now.timestamp())

    def _active_at_timestamp(self, now: float) -> SigningKey | None:
        position = bisect.bisect_right(self._activations, now)
        return self._timeline[position - 1] if position else None

    def switch_at(self, now: float) -> tuple[SigningKey | None, float] | None:
        """The key active before the current one and when the current one took over.

        ``None`` when the current key has been active since the ring was configured (no switch
        by time); the first element is ``None`` when no key signed before it.
        """
        position = bisect.bisect_right(self._activations, now)
        if position == 0 or self._activations[position - 1] == _EARLIEST:
            return None
        before = self._timeline[position - 2] if position >= 2 else None
        return before, self._activations[position - 1]

    def active(self) -> SigningKey:
        """The key that signs now; a ring that has keys always has one."""
        key = self._active_at_timestamp(time.time())
        if key is None:
            raise ConfigError("credentials.keys: no client key is configured")
        return key

    def state_at(self, key: ClientKey, now: datetime) -> KeyState:
        """The effective state of ``key`` at ``now``.

        A key whose ``activate-at`` has passed is active, or retired once a later key (of the
        same use) has activated; one whose time has not come is next.
        """
        activated = _activation_time(key)
        if key.state is KeyState.RETIRED:
            return KeyState.RETIRED
        if activated is None or activated > now.timestamp():
            return KeyState.NEXT
        if isinstance(key, EncryptionKey):
            later = [
                when
                for other in self._enc_keys
                if other is not key
                and (when := _activation_time(other)) is not None
                and activated < when <= now.timestamp()
            ]
            return KeyState.RETIRED if later else KeyState.ACTIVE
        return KeyState.ACTIVE if self.active_at(now) is key else KeyState.RETIRED

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(repr(k) for k in (*self._keys, *self._enc_keys))})"


def _activation_time(key: ClientKey) -> float | None:
    """When ``key`` starts signing (Unix time; -inf for "active" without a time), or never."""
    if key.state is KeyState.RETIRED:
        return None
    if key.activate_at is not None:
        return key.activate_at.timestamp()
    return _EARLIEST if key.state is KeyState.ACTIVE else None


def _check_unique_kids(keys: Sequence[ClientKey]) -> None:
    seen: dict[str, str] = {}
    for key in keys:
        if key.kid in seen:
            raise ConfigError(
                f"credentials.keys: kid {key.kid!r} is used by {seen[key.kid]} and "
                f"{key.source}; each key needs its own kid (the same key listed twice?)"
            )
        seen[key.kid] = key.source


def _check_timeline(keys: Sequence[SigningKey], times: Sequence[float]) -> None:
    for earlier, later, when in zip(keys, keys[1:], times[1:], strict=False):
        if _activation_time(earlier) == when:
            if when == _EARLIEST:
                what = "are both configured active"
            else:
                stamp = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
                what = f"both activate at {stamp}"
            raise ConfigError(
                f"credentials.keys: {earlier.source} and {later.source} {what}; exactly one "
                'key may be active: set state = "next" or "retired" on one, or give '
                "distinct activate-at times"
            )
