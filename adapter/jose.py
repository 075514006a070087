"""The few JWS operations the hot paths need, written directly on ``cryptography``.

Signing a client assertion happens on every call to the identity server, so the signer for a
key is built once (hash, padding and signature encoding chosen up front) and then is a single
``cryptography`` call plus, for ECDSA, the DER-to-raw conversion JWS requires (RFC 7518 §3.4).
Everything that is not on a hot path uses joserfc instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
Signer = Callable[[bytes], bytes]

MIN_RSA_BITS = 2048

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
ASYMMETRIC_ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS, "EdDSA")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")

# JWA curve name, and the one ES* algorithm each curve may sign with (RFC 7518 §3.4).
CURVES: dict[str, tuple[str, str]] = {
    "secp256r1": ("P-256", "ES256"),
    "secp384r1": ("P-384", "ES384"),
    "secp521r1": ("P-521", "ES512"),
}

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def key_type_name(key: PrivateKey | PublicKey) -> str:
    """A short human name for a key, for messages and listings: ``RSA-2048``, ``EC P-256``."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        crv = CURVES.get(key.curve.name, (key.curve.name, ""))[0]
        return f"EC {crv}"
    return "Ed25519"


def unsupported_key_reason(key: object) -> str | None:
    """Why ``key`` cannot be a client key, or ``None`` when it can.

    The adapter accepts RSA of at least 2048 bits, EC on P-256/P-384/P-521 and Ed25519: what
    Keycloak and the OpenID Connect servers we target verify.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits is too weak; use at least {MIN_RSA_BITS} bits"
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in CURVES:
            return f"EC curve {key.curve.name} is not supported; use P-256, P-384 or P-521"
        return None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    return f"{type(key).__name__} keys are not supported; use RSA, EC (P-256/384/521) or Ed25519"


def default_algorithm(key: PrivateKey) -> str:
    """The algorithm a key signs with when the configuration names none."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return CURVES[key.curve.name][1]
    return "EdDSA"


def algorithm_mismatch(alg: str, key: PrivateKey) -> str | None:
    """Why ``key`` cannot sign with ``alg``, or ``None`` when it can."""
    if alg not in ASYMMETRIC_ALGORITHMS:
        return f"unknown algorithm {alg!r}; use one of {', '.join(ASYMMETRIC_ALGORITHMS)}"
    if alg in RSA_ALGORITHMS:
        if not isinstance(key, rsa.RSAPrivateKey):
            return f"{alg} needs an RSA key, this is {key_type_name(key)}"
        return None
    if alg in EC_ALGORITHMS:
        wanted = next(crv for crv, a in CURVES.values() if a == alg)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or CURVES.get(
            key.curve.name, ("", "")
        ) != (wanted, alg):
            return f"{alg} needs an EC {wanted} key, this is {key_type_name(key)}"
        return None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        return f"EdDSA needs an Ed25519 key, this is {key_type_name(key)}"
    return None


def make_signer(alg: str, key: PrivateKey) -> Signer:
    """Return ``sign(data) -> JWS signature bytes`` for ``alg``; the pair must be checked first.

    Raises ``ValueError`` when ``alg`` and ``key`` do not match.
    """
    problem = algorithm_mismatch(alg, key)
    if problem:
        raise ValueError(problem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    hash_alg = _HASHES[alg[2:]]()
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding
        if alg.startswith("PS"):
            pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        else:
            pad = padding.PKCS1v15()
        rsa_key = key

        def sign_rsa(data: bytes) -> bytes:
            return rsa_key.sign(data, pad, hash_alg)

        return sign_rsa
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ec_key = key
    ecdsa = ec.ECDSA(hash_alg)
    size = (key.curve.key_size + 7) // 8

    def sign_ec(data: bytes) -> bytes:
        return der_to_raw(ec_key.sign(data, ecdsa), size)

    return sign_ec


def der_to_raw(der: bytes, size: int) -> bytes:
    """An ECDSA signature in DER (``SEQUENCE { INTEGER r, INTEGER s }``, as ``cryptography``
    writes it) as JWS wants it: ``r || s``, each big-endian in ``size`` bytes (RFC 7518 §3.4).

    Read by slicing (less than half of ``decode_dss_signature`` plus two ``int.to_bytes``,
    which cost a few per cent of an ES256 signature: bench/dpop.py): an INTEGER's content is
    its value big-endian, with a leading zero byte when its top bit is set, so its last
    ``size`` bytes, zero-filled on the left, are the raw value. Anything that is not that shape
    (never so from ``cryptography``) goes through ``decode_dss_signature``, which checks it.
    """
    at = 2 if der[1] < 0x80 else 3  # P-521's SEQUENCE is longer than 127 bytes: 0x81 <length>
    r_end = at + 2 + der[at + 1]
    r, s = der[at + 2 : r_end], der[r_end + 2 :]
    if (
        len(der) > r_end + 1
        and der[at] == der[r_end] == 0x02
        and len(s) == der[r_end + 1]
        and len(r) <= size + 1 >= len(s)
    ):
        return r[-size:].rjust(size, b"\x00") + s[-size:].rjust(size, b"\x00")
    r_value, s_value = decode_dss_signature(der)
    return r_value.to_bytes(size, "big") + s_value.to_bytes(size, "big")


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE encodes every binary value (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64std(data: bytes) -> str:
    """Standard padded base64, which ``x5c`` uses (RFC 7517 §4.7), unlike the rest of JOSE."""
    return base64.b64encode(data).decode("ascii")


def make_hmac_signer(alg: str, secret: bytes) -> Signer:
    """``sign(data)`` for HS256/384/512 (client_secret_jwt) with a client secret."""
    if alg not in HMAC_ALGORITHMS:
        raise ValueError(f"unknown algorithm {alg!r}; use one of {', '.join(HMAC_ALGORITHMS)}")
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]

    def sign_hmac(data: bytes) -> bytes:
        return hmac.new(secret, data, digest).digest()

    return sign_hmac


def encode_header(header: dict[str, Any]) -> bytes:
    """The base64url JSON of a JWS header plus the trailing dot, serialised once per key."""
    return b64url(json.dumps(header, separators=(",", ":")).encode()).encode() + b"."


def sign_compact(encoded_header: bytes, claims: dict[str, Any], sign: Signer) -> str:
    """A compact JWS: header (already encoded by :func:`encode_header`), claims, signature."""
    signing_input = (
        encoded_header + b64url(json.dumps(claims, separators=(",", ":")).encode()).encode()
    )
    return (signing_input + b"." + b64url(sign(signing_input)).encode()).decode("ascii")


@dataclass(frozen=True)
class CompactJws:
    """A compact JWS split into its parts; nothing is trusted until the signature verifies."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes


MAX_TOKEN_LENGTH = 16_384  # bearer headers: far above real tokens; bounds a hostile one's work
MAX_ISSUED_TOKEN_LENGTH = 65_536  # tokens from the token endpoint (many roles or groups)
_MAX_HEADER_LENGTH = 2_048


def parse_compact(token: str, max_length: int = MAX_TOKEN_LENGTH) -> CompactJws:
    """Split and decode a compact JWS; ``ValueError`` (without the token) when malformed."""
    if len(token) > max_length:
        raise ValueError(f"token too long (over the {max_length}-byte limit)")
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS (three dot-separated parts expected)")
    if len(parts[0]) > _MAX_HEADER_LENGTH:
        raise ValueError("JWS header too long")
    try:
        header = strict_json(b64url_decode(parts[0]))
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except (ValueError, RecursionError, binascii.Error):
        header = None
    if not isinstance(header, dict):
        raise ValueError("not a compact JWS (bad base64url, or the header is not a JSON object)")
    return CompactJws(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def strict_json(data: bytes | str) -> Any:
    """JSON without NaN/Infinity (which compare false with everything: an ``exp`` of NaN would
    never expire). Raises ``ValueError``/``RecursionError`` on bad input."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return _STRICT_DECODER.decode(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # built once: hot path


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url strictly: URL-safe alphabet, canonical encoding only.

    Canonical means re-encoding gives the same text, so one token has one spelling (a cache or
    deny list keyed by the token string cannot be bypassed by flipping unused bits). ``text``
    may be the bytes a server gave (a session cookie as the entry finds it: not decoded).
    """
    try:
        data = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError as exc:
        raise ValueError("not base64url") from exc
    # The standard alphabet's own characters and padding are not base64url; everything else
    # that is not in the alphabet binascii's strict mode refuses (measured: half the time of a
    # regular expression over a session cookie, on the path of every unseen session).
    if b"+" in data or b"/" in data or b"=" in data:
        raise ValueError("not base64url")
    # Only the last character can carry unused bits: 4 of them after 2 characters of a group,
    # 2 after 3; they must be zero. (A length of 1 mod 4 is never valid.)
    rest = len(data) % 4
    if rest == 1 or (rest and _B64URL_VALUES[data[-1]] & (0xF if rest == 2 else 0x3)):
        raise ValueError("not canonical base64url")
    try:
        padded = data + b"==="[: 4 - rest] if rest else data
        return binascii.a2b_base64(padded.translate(_TO_STANDARD), strict_mode=True)
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# Each byte's value in the base64url alphabet; 0 for the others (binascii refuses those).
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUES = [max(_B64URL_ALPHABET.find(byte), 0) for byte in range(256)]


def _rsa_parameters(alg: str) -> tuple[padding.AsymmetricPadding, hashes.HashAlgorithm]:
    hash_alg = _HASHES[alg[2:]]()
    if alg.startswith("PS"):
        return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size), hash_alg
    return padding.PKCS1v15(), hash_alg


_RSA_VERIFY = {alg: _rsa_parameters(alg) for alg in RSA_ALGORITHMS}  # built once: hot path


# One ECDSA parameter object per algorithm (immutable): not built again for every check.
_ECDSA = {alg: ec.ECDSA(_HASHES[alg[2:]]()) for alg in EC_ALGORITHMS}


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid ``alg`` signature by ``key``; the pair must fit.

    Only asymmetric algorithms are verified here: tokens from the identity server are never
    accepted with HMAC, which is what makes the "HS256 signed with the public key" attack moot.
    """
    try:
        if alg == "EdDSA":
            if not isinstance(key, ed25519.Ed25519PublicKey):
                return False
            key.verify(signature, signing_input)
            return True
        if alg in _RSA_VERIFY:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            pad, hash_alg = _RSA_VERIFY[alg]
            key.verify(signature, signing_input, pad, hash_alg)
            return True
        if alg in EC_ALGORITHMS:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            if CURVES.get(key.curve.name, ("", ""))[1] != alg:
                return False
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, _ECDSA[alg])
            return True
    except InvalidSignature:
        return False
    return False
