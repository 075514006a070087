"""DPoP proofs (RFC 9449): make them as a client, check them as a resource server.

A pure leaf of the protocol layer (docs/architecture.md): no I/O, no configuration, no
framework. The caller keeps the per-session key (:class:`DPoPKey`, serialised into its sealed
session), remembers seen ``jti`` values in a store until :attr:`CheckedProof.replay_until`,
issues nonces, and turns :class:`DPoPProofError` into ``error="invalid_dpop_proof"``
(:class:`UseDPoPNonce` into ``error="use_dpop_nonce"`` with a fresh ``DPoP-Nonce``).

Making a proof is on the hot path of every DPoP-bound call, so a key serialises its JWS header
and builds its signer once; a proof then costs one ``cryptography`` signature plus a JSON dump
(measured against the raw signature in ``bench/``). Checking a proof imports the header's
``jwk`` directly with ``cryptography`` (bounded cache: a client sends the same key each time)
and verifies with :func:`adapter.jose.verify_signature`.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from adapter.errors import ValidationError
from adapter.jose import (
    ASYMMETRIC_ALGORITHMS,
    CURVES,
    MIN_RSA_BITS,
    PrivateKey,
    PublicKey,
    b64url,
    b64url_decode,
    der_to_raw,
    encode_header,
    make_signer,
    parse_compact,
    strict_json,
    verify_signature,
)
from adapter.keys.keyring import public_jwk

PROOF_TYPE = "dpop+jwt"  # the JWS typ of a proof (RFC 9449 §4.2), compared exactly
# What a resource server accepts by default, in the order ``algs`` advertises them: ES256 first
# (what clients generate), never ``none`` nor HMAC (a proof is signed by a public key it names).
DEFAULT_ALGS = (
    *("ES256", "EdDSA", "ES384", "ES512"),
    *("PS256", "PS384", "PS512", "RS256", "RS384", "RS512"),
)
# A proof is made just before its request is sent, so a minute covers a slow network; the leeway
# covers clock skew between client and server both ways. A proof older than max_age + leeway
# (90 s by default) is refused, which also bounds how long the caller's jti store must remember.
DEFAULT_MAX_AGE = 60
DEFAULT_LEEWAY = 30
MAX_PROOF_LENGTH = 8_192  # far above a proof with an RSA-4096 jwk and a long nonce
MAX_JTI_LENGTH = 256
MAX_HTU_LENGTH = 4_096
JTI_BYTES = 16  # 128 random bits per proof, as hex (RFC 9449 §4.2 asks for at least 96)

# JWK members that carry private key material (RFC 7518 §6.2.2, §6.3.2, §6.4): a proof's jwk
# must hold none (RFC 9449 §4.3 #7), or whoever logs the proof holds the key.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# The required members of each key type, in the lexicographic order of RFC 7638 §3.2.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
_CURVE_BY_CRV = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_HASH_BY_ALG = {"ES256": hashes.SHA256, "ES384": hashes.SHA384}
_CURVE_BY_ALG = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
_EC_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 6750 §3: error and error_description hold only these characters (no '"' and no '\').
_HEADER_TEXT = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an alg name is an RFC 9110 token
_NUMBER = (int, float)
_MAX_MEMBER_LENGTH = 1_024  # base64url of an RSA-6144 modulus; bounds the import work


class DPoPProofError(ValidationError):
    """A DPoP proof was refused; answer ``error="invalid_dpop_proof"`` (RFC 9449 §7.1).

    ``description`` is a fixed, short sentence: it never contains the proof, its claims or its
    key, so it can go into a ``WWW-Authenticate`` header and a log line as it is.
    """

    error = "invalid_dpop_proof"

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


class UseDPoPNonce(DPoPProofError):
    """The proof lacks the nonce the server requires, or has an old one: answer
    ``error="use_dpop_nonce"`` with a fresh ``DPoP-Nonce`` header (RFC 9449 §8, §9)."""

    error = "use_dpop_nonce"


class DPoPKey:
    """The client's DPoP key: a private key, the algorithm it signs with, its public JWK and
    thumbprint (``jkt``, which the server binds tokens to as ``cnf.jkt``).

    The proof header and the signer are built once here, so that :func:`make_proof` does no
    per-call key work. The repr shows the algorithm and the thumbprint, never key material.
    """

    __slots__ = (
        *("_ath", "_der_sign", "_ec_size", "_header", "_jwk", "_key", "_last", "_sign"),
        *("alg", "jkt"),
    )

    def __init__(self, private_key: PrivateKey) -> None:
        """Wrap ``private_key``: EC P-256/384/521 sign with ES256/384/512, Ed25519 with EdDSA,
        RSA of at least 2048 bits with PS256. ``ValueError`` for any other key."""
        self.alg = _algorithm_for(private_key)
        self._key = private_key
        self._sign = make_signer(self.alg, private_key)
        # P-256 and P-384 (whose DER is never over 127 bytes): make_proof reads r || s out of
        # the DER signature itself, as adapter.jose.der_to_raw does, two Python calls fewer.
        self._ec_size = 0
        self._der_sign: Callable[[bytes], bytes] = self._sign
        if isinstance(private_key, ec.EllipticCurvePrivateKey) and self.alg != "ES512":
            self._ec_size = (private_key.curve.key_size + 7) // 8
            ecdsa = ec.ECDSA(_HASH_BY_ALG[self.alg]())
            sign = private_key.sign
            # A closure calling with positional arguments: cryptography's bindings take a
            # keyword argument (a ``partial(..., signature_algorithm=)``) ~2 µs slower.
            self._der_sign = lambda data: sign(data, ecdsa)
        self._jwk = public_jwk(private_key.public_key())
        self.jkt = jwk_thumbprint(self._jwk)
        self._header = encode_header({"typ": PROOF_TYPE, "alg": self.alg, "jwk": self._jwk})
        self._ath = ("", access_token_hash(""))  # the last access token and its hash
        # The last request's constant part of a proof, signing input ready (see make_proof).
        self._last: tuple[tuple[str, str, str | None, str | None] | None, bytes, str] = (
            None,
            b"",
            "",
        )

    def access_token_hash(self, access_token: str) -> str:
        """:func:`access_token_hash`, remembered for the last token: a session sends the same
        access token with many proofs. (One tuple, swapped whole: safe across threads.)"""
        token, ath = self._ath
        if access_token != token:
            ath = access_token_hash(access_token)
            self._ath = (access_token, ath)
        return ath

    @classmethod
    def generate(cls, alg: str = "ES256") -> DPoPKey:
        """A new key for ``alg`` (ES256/384/512, EdDSA or PS256): one per session, say."""
        if alg in _CURVE_BY_ALG:
            return cls(ec.generate_private_key(_CURVE_BY_ALG[alg]))
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if alg == "PS256":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS))
        raise ValueError(f"cannot generate a DPoP key for {alg!r}; use ES256, EdDSA or PS256")

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public JWK (a copy): what goes into every proof header, no private member."""
        return dict(self._jwk)

    def to_bytes(self) -> bytes:
        """The key in a compact private form, ``ALG:`` plus the raw private value (the EC
        scalar, 32 to 66 bytes, or the Ed25519 seed; RSA as PKCS#8 DER), to keep an ephemeral
        key inside a session. It is the private key: the caller encrypts what holds it."""
        return self.alg.encode("ascii") + b":" + _private_value(self._key)

    @classmethod
    def from_bytes(cls, data: bytes) -> DPoPKey:
        """The key :meth:`to_bytes` wrote; ``ValueError`` (without the data) when it is not."""
        alg, sep, value = data.partition(b":")
        if not sep:
            raise ValueError("not a serialised DPoP key")
        return cls(_private_key(alg.decode("ascii", "replace"), value))

    def to_dict(self) -> dict[str, str]:
        """:meth:`to_bytes` as a JSON-able dict ``{"alg": ..., "key": base64url}``."""
        return {"alg": self.alg, "key": b64url(_private_value(self._key))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DPoPKey:
        """The key :meth:`to_dict` wrote; ``ValueError`` (without the data) when it is not."""
        alg, value = data.get("alg"), data.get("key")
        if not isinstance(alg, str) or not isinstance(value, str):
            raise ValueError("not a serialised DPoP key")
        return cls(_private_key(alg, b64url_decode(value)))

    def __repr__(self) -> str:
        return f"DPoPKey(alg={self.alg!r}, jkt={self.jkt!r})"


def _algorithm_for(key: object) -> str:
    """The one algorithm a DPoP key signs with; ``ValueError`` when it cannot be one."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in CURVES:
        return CURVES[key.curve.name][1]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= MIN_RSA_BITS:
        return "PS256"
    raise ValueError(
        "a DPoP key is EC (P-256, P-384, P-521), Ed25519, or RSA of at least 2048 bits"
    )


def _private_value(key: PrivateKey) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        return key.private_numbers().private_value.to_bytes(size, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def _private_key(alg: str, value: bytes) -> PrivateKey:
    """The private key of a serialised DPoP key; ``ValueError`` naming no value on failure."""
    try:
        if alg in _CURVE_BY_ALG:
            curve = _CURVE_BY_ALG[alg]
            if len(value) != (curve.key_size + 7) // 8:
                raise ValueError
            return ec.derive_private_key(int.from_bytes(value, "big"), curve)
        if alg == "EdDSA":
            return ed25519.Ed25519PrivateKey.from_private_bytes(value)
        if alg == "PS256":
            key = load_der_private_key(value, password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
    except (ValueError, TypeError):
        pass
    raise ValueError("not a serialised DPoP key (unknown algorithm or malformed key)")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK: base64url(SHA-256) of its required members in
    lexicographic order, without whitespace. ``ValueError`` for an unknown key type."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None or not all(name in jwk for name in members):
        raise ValueError("a JWK thumbprint needs kty EC, OKP or RSA and its required members")
    required = {name: jwk[name] for name in members}
    text = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url(hashlib.sha256(text.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url(SHA-256(ASCII access token)) (RFC 9449 §4.2)."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def make_proof(
    key: DPoPKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A DPoP proof for one request (RFC 9449 §4.2): sign a fresh one for every request,
    including retries. ``htu`` is ``url`` without its query and fragment; ``ath`` binds the
    proof to ``access_token`` when one is sent; ``nonce`` is the server's last ``DPoP-Nonce``.

    The claims are written as JSON text directly (the strings escaped by the C encoder, the
    ``jti`` hex, ``iat`` an integer): a generic ``json.dumps`` of a dict costs a tenth of the
    signature, and this runs for every DPoP-bound request. The claims that stay the same from
    one request to the next (``htm``, ``htu``, ``ath``, ``nonce``) come first, and the key keeps
    its last request's header and whole base64 groups of them (three bytes each) encoded: a
    proof then encodes only the rest, ``jti`` and ``iat`` (bench/dpop.py measures the proof
    against the raw signature).
    """
    request = (method, url, access_token, nonce)
    last, prefix, rest = key._last
    if request != last:
        prefix, rest = _constant_claims(key, request)
        key._last = (request, prefix, rest)  # one tuple, swapped whole: safe across threads
    jti = next(_jtis, None) or _new_jti()
    iat = int(time.time() if now is None else now)
    claims = f'{rest},"jti":"{jti}","iat":{iat}}}'.encode()  # base64url inline: 2 calls less
    signing_input = prefix + _b2a(claims, newline=False).translate(_B64URL).rstrip(b"=")
    size = key._ec_size
    if size:  # ECDSA: DER ``30 L 02 Lr r 02 Ls s`` to r || s (RFC 7518 §3.4), by slicing
        der = key._der_sign(signing_input)
        r_end = 4 + der[3]
        if der[r_end] == 2 and der[r_end + 1] == len(der) - r_end - 2:
            r, s = der[4:r_end], der[r_end + 2 :]
            raw = r[-size:].rjust(size, b"\x00") + s[-size:].rjust(size, b"\x00")
        else:  # never so from cryptography; der_to_raw checks it (or raises)
            raw = der_to_raw(der, size)
    else:
        raw = key._sign(signing_input)
    signature = _b2a(raw, newline=False).translate(_B64URL).rstrip(b"=")
    return b".".join((signing_input, signature)).decode("ascii")


def _constant_claims(
    key: DPoPKey, request: tuple[str, str, str | None, str | None]
) -> tuple[bytes, str]:
    """The header and ``{"htm":...,"htu":...[,"ath":...][,"nonce":...]`` base64url-encoded up
    to a multiple of three bytes (base64 encodes three bytes at a time, so what follows can be
    encoded on its own and appended), and the zero to two characters left over."""
    method, url, access_token, nonce = request
    htu = url.partition("#")[0].partition("?")[0]
    text = f'{{"htm":{_json_string(method)},"htu":{_json_string(htu)}'
    if access_token is not None:
        text += f',"ath":"{key.access_token_hash(access_token)}"'
    if nonce is not None:
        text += f',"nonce":{_json_string(nonce)}'
    cut = len(text) - len(text) % 3  # ASCII only (the encoder escapes the rest): chars = bytes
    return key._header + _b64url_bytes(text[:cut].encode()), text[cut:]


_JTI_BATCH = 256
_jtis: Iterator[str] = iter(())


def _new_jti() -> str:
    """A fresh ``jti``: 128 bits from ``os.urandom`` as hex, read for 256 proofs at a time (one
    system call costs as much as the rest of the claims). ``next`` on a list iterator is atomic,
    so threads never share a value; a forked child drops the pool it inherited."""
    global _jtis  # the pool is replaced whole when used up
    jti = next(_jtis, None)
    if jti is None:
        data = os.urandom(JTI_BYTES * _JTI_BATCH).hex()
        size = 2 * JTI_BYTES
        fresh = iter([data[i : i + size] for i in range(0, len(data), size)])
        jti, _jtis = next(fresh), fresh
    return jti


def _forget_jtis() -> None:
    global _jtis
    _jtis = iter(())


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_jtis)

_json_string = json.encoder.encode_basestring_ascii  # a JSON string literal, quotes included
_B64URL = bytes.maketrans(b"+/", b"-_")
_b2a = binascii.b2a_base64


def _b64url_bytes(data: bytes) -> bytes:
    """:func:`adapter.jose.b64url` without the round trip through ``str``."""
    return _b2a(data, newline=False).translate(_B64URL).rstrip(b"=")


@dataclass(frozen=True)
class CheckedProof:
    """A proof that passed :func:`check_proof`.

    ``jkt`` is the thumbprint of its key (what a DPoP-bound token's ``cnf.jkt`` names); the
    caller refuses a ``jti`` seen before and remembers this one until ``replay_until``, after
    which the proof is too old to pass anyway.
    """

    jkt: str
    jti: str
    iat: float
    alg: str
    public_key: PublicKey = field(repr=False)
    replay_until: float


def check_proof(
    proof: str | Sequence[str],
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    cnf_jkt: str | None = None,
    algorithms: Sequence[str] = DEFAULT_ALGS,
    max_age: float = DEFAULT_MAX_AGE,
    leeway: float = DEFAULT_LEEWAY,
    nonce: str | Collection[str] | None = None,
    now: float | None = None,
) -> CheckedProof:
    """Check a DPoP proof for the request ``method url`` (RFC 9449 §4.3, in its order).

    ``proof`` is the ``DPoP`` header value, or all of them (exactly one is accepted). With
    ``access_token`` the proof must carry its hash (``ath``) and, with ``cnf_jkt`` (the token's
    ``cnf.jkt``), be signed by that key. ``nonce`` is the nonce (or the nonces, current and
    previous) the server accepts. Raises :class:`UseDPoPNonce` for a missing or stale nonce,
    :class:`DPoPProofError` for anything else. ``ValueError`` if ``url`` is not absolute.
    """
    expected_htu = _normalized_uri(url)
    if expected_htu is None:
        raise ValueError("check_proof needs the absolute http(s) URL of the request")
    alg, key, jkt, claims = _verified(_one_proof(proof), algorithms)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise DPoPProofError("the proof has no usable jti")
    if claims.get("htm") != method:
        raise DPoPProofError("the proof is for another HTTP method (htm)")
    htu = claims.get("htu")
    if (
        not isinstance(htu, str)
        or len(htu) > MAX_HTU_LENGTH
        or _normalized_uri(htu) != (expected_htu)
    ):
        raise DPoPProofError("the proof is for another URL (htu)")
    if nonce is not None:
        _check_nonce(claims.get("nonce"), nonce)
    current = time.time() if now is None else now
    iat = _issued_at(claims, current, max_age, leeway)
    if access_token is not None:
        _check_ath(claims.get("ath"), access_token)
    if cnf_jkt is not None and not hmac.compare_digest(jkt, cnf_jkt):
        raise DPoPProofError("the proof key is not the key the access token is bound to")
    return CheckedProof(jkt, jti, iat, alg, key, iat + max_age + leeway)


def _one_proof(proof: str | Sequence[str]) -> str:
    if isinstance(proof, str):
        return proof
    if len(proof) != 1 or not isinstance(proof[0], str):
        raise DPoPProofError("exactly one DPoP proof is required")
    return proof[0]


def _verified(proof: str, algorithms: Sequence[str]) -> tuple[str, PublicKey, str, dict[str, Any]]:
    """Parse a proof, check its header (typ, alg, jwk) and signature: alg, key, jkt, claims."""
    try:
        jws = parse_compact(proof, MAX_PROOF_LENGTH)
    except ValueError:
        raise DPoPProofError("the proof is not a compact JWS of acceptable size") from None
    header = jws.header
    if header.get("typ") != PROOF_TYPE:
        raise DPoPProofError("the proof type (typ) is not dpop+jwt")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in ASYMMETRIC_ALGORITHMS:
        raise DPoPProofError("the proof algorithm is not accepted")
    if "crit" in header:
        raise DPoPProofError("the proof has critical header parameters")
    key, jkt = proof_key(header.get("jwk"), alg)
    if not verify_signature(alg, key, jws.signing_input, jws.signature):
        raise DPoPProofError("the proof signature is invalid")
    try:
        claims = strict_json(jws.payload)
    except (ValueError, RecursionError):
        claims = None
    if not isinstance(claims, dict):
        raise DPoPProofError("the proof payload is not a JSON object")
    return alg, key, jkt, claims


def proof_key(jwk: object, alg: str) -> tuple[PublicKey, str]:
    """The public key of a proof header's ``jwk`` and its thumbprint.

    Refused: no JWK, one with a private member, an unknown key type or curve, RSA under 2048
    bits, a point off its curve, non-canonical encodings (so that one key has one thumbprint),
    and a JWK whose own ``alg`` differs from the header's.
    """
    if not isinstance(jwk, dict):
        raise DPoPProofError("the proof header has no jwk")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise DPoPProofError("the proof jwk contains private key material")
    if jwk.get("alg", alg) != alg:
        raise DPoPProofError("the proof jwk is for another algorithm")
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty, ()) if isinstance(kty, str) else ()
    found = (jwk.get(name) for name in members)
    values = tuple(v for v in found if isinstance(v, str) and len(v) <= _MAX_MEMBER_LENGTH)
    if not members or len(values) != len(members):
        raise DPoPProofError("the proof jwk is not a usable public key")
    try:
        return _imported(values)
    except ValueError:
        raise DPoPProofError("the proof jwk is not a usable public key") from None


@functools.lru_cache(maxsize=512)
def _imported(values: tuple[str, ...]) -> tuple[PublicKey, str]:
    """Import the required members of a JWK (thumbprint order, kty second), cached: a client
    sends the same key with every proof. Raises ``ValueError``."""
    kty = values[1]
    key: PublicKey
    if kty == "EC":
        crv, _, x, y = values
        if crv not in _CURVE_BY_CRV:
            raise ValueError
        size = _EC_SIZES[crv]
        x_bytes, y_bytes = b64url_decode(x), b64url_decode(y)
        if len(x_bytes) != size or len(y_bytes) != size:
            raise ValueError  # RFC 7518 §6.2.1.2: full length, so one spelling per key
        point = b"\x04" + x_bytes + y_bytes
        key = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE_BY_CRV[crv], point)
        jwk = {"crv": crv, "kty": kty, "x": x, "y": y}
    elif kty == "OKP":
        crv, _, x = values
        if crv != "Ed25519":
            raise ValueError
        key = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(x))
        jwk = {"crv": crv, "kty": kty, "x": x}
    else:
        e, _, n = values
        n_bytes, e_bytes = b64url_decode(n), b64url_decode(e)
        if not n_bytes or not e_bytes or n_bytes[0] == 0 or e_bytes[0] == 0:
            raise ValueError  # RFC 7518 §6.3.1: the fewest octets, so one spelling per key
        key = rsa.RSAPublicNumbers(
            int.from_bytes(e_bytes, "big"), int.from_bytes(n_bytes, "big")
        ).public_key()
        if key.key_size < MIN_RSA_BITS:
            raise ValueError
        jwk = {"e": e, "kty": kty, "n": n}
    return key, jwk_thumbprint(jwk)


def _check_nonce(found: object, accepted: str | Collection[str]) -> None:
    """The proof's ``nonce`` must be (one of) the server's current nonce(s)."""
    if not isinstance(found, str):
        raise UseDPoPNonce("the server requires a DPoP nonce")
    wanted = (accepted,) if isinstance(accepted, str) else accepted
    if not any(hmac.compare_digest(found.encode(), w.encode()) for w in wanted):
        raise UseDPoPNonce("the DPoP nonce is not the current one")


def _issued_at(claims: Mapping[str, Any], current: float, max_age: float, leeway: float) -> float:
    """``iat`` within [now - max_age - leeway, now + leeway] (RFC 9449 §4.3 #11)."""
    iat = claims.get("iat")
    if not isinstance(iat, _NUMBER) or isinstance(iat, bool) or not math.isfinite(iat):
        raise DPoPProofError("the proof has no usable iat")
    if iat > current + leeway:
        raise DPoPProofError("the proof is issued in the future (iat)")
    if iat < current - max_age - leeway:
        raise DPoPProofError("the proof is too old (iat)")
    return float(iat)


def _check_ath(found: object, access_token: str) -> None:
    """The proof must carry the hash of the access token it is sent with (RFC 9449 §4.3 #12)."""
    if not isinstance(found, str):
        raise DPoPProofError("the proof has no access token hash (ath)")
    try:
        expected = access_token_hash(access_token)
    except UnicodeEncodeError:
        raise DPoPProofError("the access token is not ASCII") from None
    if not hmac.compare_digest(found.encode(), expected.encode()):
        raise DPoPProofError("the proof is for another access token (ath)")


def _normalized_uri(uri: str) -> str | None:
    """``uri`` without query and fragment, after RFC 3986 syntax- and scheme-based
    normalisation (§6.2.2, §6.2.3, as RFC 9449 §4.3 advises): scheme and host in lower case,
    default port dropped, empty path as ``/``, percent-escapes in upper case and unreserved
    characters decoded. ``None`` unless an absolute http(s) URI without userinfo."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = _ENCODED.sub(_percent_normalized, parts.path) or "/"
    return f"{scheme}://{host}{path}"


def _percent_normalized(match: re.Match[str]) -> str:
    character = chr(int(match.group()[1:], 16))
    return character if character in _UNRESERVED else match.group().upper()


def www_authenticate(
    algs: Sequence[str] = DEFAULT_ALGS, error: str | None = None, description: str | None = None
) -> str:
    """A ``WWW-Authenticate`` challenge for the DPoP scheme (RFC 9449 §7.1):
    ``DPoP error="...", error_description="...", algs="ES256 EdDSA"``.

    Values are made safe to quote: characters RFC 6750 §3 does not allow in ``error`` and
    ``error_description`` (quotes, backslashes, control and non-ASCII characters) become ``?``,
    the description is cut to 200 characters, and algorithm names that are not tokens are
    left out.
    """
    params = []
    if error is not None:
        params.append(f'error="{_HEADER_TEXT.sub("?", error[:64])}"')
    if description is not None:
        params.append(f'error_description="{_HEADER_TEXT.sub("?", description[:200])}"')
    names = " ".join(alg for alg in algs if _TOKEN.fullmatch(alg))
    if names:
        params.append(f'algs="{names}"')
    return "DPoP " + ", ".join(params) if params else "DPoP"


def bound_key(claims: Mapping[str, Any]) -> str | None:
    """The thumbprint of the key an access token is bound to (``cnf.jkt``, RFC 9449 §6), or
    ``None`` for a token bound to no DPoP key."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


class ProofMemory:
    """The proofs used in this process, each until its window closes (without Redis).

    Bounded, and full it refuses new proofs (503) rather than forget one whose window is still
    open: forgetting would let that proof be replayed. Keys are ``<jkt>:<jti>``; one key (one
    client) may hold a sixteenth of the memory at most, so a client sending proofs as fast as
    it can fills its own share, not everyone's."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.max_per_key = max(1, max_entries // 16)
        self._until: OrderedDict[str, float] = OrderedDict()
        self._per_key: dict[str, int] = {}
        self._lock = threading.Lock()

    def first_use(self, key: str, until: float, now: float) -> bool | None:
        """``True`` the first time ``key`` is used, ``False`` after; ``None``: full (for this
        proof key, or for all)."""
        owner = key.partition(":")[0]
        with self._lock:
            table = self._until
            while table and next(iter(table.values())) < now:
                self._forget(table.popitem(last=False)[0])
            if table.get(key, -1.0) >= now:  # the proof's window still open, its edge too
                return False
            held = self._per_key.get(owner, 0)
            if len(table) >= self.max_entries or held >= self.max_per_key:
                return None
            table[key] = until
            self._per_key[owner] = held + 1
            return True

    def _forget(self, key: str) -> None:
        owner = key.partition(":")[0]
        left = self._per_key.get(owner, 1) - 1
        if left > 0:
            self._per_key[owner] = left
        else:
            self._per_key.pop(owner, None)
