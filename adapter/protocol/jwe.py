"""Encrypted tokens (JWE compact, RFC 7516) the server sends the client: pure functions.

A server that knows a client's encryption keys (``use: enc`` at ``/k_jwks``) may encrypt its
ID tokens to one of them (Keycloak: the client's "ID token encryption key management
algorithm"). :func:`signed_token` turns such a token back into the signed token inside it,
which is then verified as any signed token: a JWE only hides a JWS, it never stands for one.

What is refused, with a short reason and never any key material (:class:`ValidationError`):
a JWE where the configuration expects a plain signed token (no encryption key) and a plain
signed token where it requires encryption (``id-token-encrypted-response-alg``); a key
management or content encryption algorithm not expected (``RSA1_5`` always: a padding
oracle); a token encrypted to a key the client does not hold; a header this module does not
understand (``zip``, ``crit``); anything that fails to decrypt; and an inner token that is not
a signed JWS (``alg: none`` included).

The cryptography is joserfc's JWE (on ``cryptography``), with a registry of exactly the
token's expected algorithms; the checks above come first, here. Measured (bench/jwe.py):
decrypt + verify of an RSA-OAEP-256 / A256GCM ID token costs 1.1 times the raw
``cryptography`` operations, the RSA private-key operation being nearly all of it, so no code
of the adapter's own does the decryption.
"""

from __future__ import annotations

import binascii
import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa

from adapter.config import AdapterConfig
from adapter.config.key_options import (
    CONTENT_ENCRYPTION_ALGORITHMS,
    KEY_MANAGEMENT_ALGORITHMS,
    REFUSED_KEY_MANAGEMENT,
    KeyState,
)
from adapter.errors import ValidationError
from adapter.jose import MAX_ISSUED_TOKEN_LENGTH, b64url_decode, strict_json
from adapter.keys.keyring import EncryptionKey, KeyRing

if TYPE_CHECKING:  # joserfc loads with the first encrypted token (~10 ms at start-up)
    from joserfc.jwe import JWERegistry
    from joserfc.jwk import ECKey, RSAKey

__all__ = [
    "Expected",
    "decrypt_compact",
    "expected_id_tokens",
    "is_jwe",
    "signed_token",
]

_MAX_HEADER_LENGTH = 4_096  # an ECDH-ES header carries the ephemeral key: more than a JWS's
_STATE_ORDER = {KeyState.ACTIVE: 0, KeyState.NEXT: 1, KeyState.RETIRED: 2}


@dataclass(frozen=True)
class Expected:
    """What an encrypted token may be: the keys that decrypt, the key-management (``algs``)
    and content encryption (``encs``) algorithms accepted, and whether a plain signed token
    is refused (``required``)."""

    keys: tuple[EncryptionKey, ...] = ()
    algs: tuple[str, ...] = ()
    encs: tuple[str, ...] = CONTENT_ENCRYPTION_ALGORITHMS
    required: bool = False


def expected_id_tokens(config: AdapterConfig, ring: KeyRing) -> Expected:
    """What the configuration says of ID tokens: with ``id-token-encrypted-response-alg``,
    encrypted with that alg and ``-enc`` and nothing else; without it, a plain signed token
    or, when the client has encryption keys, one encrypted to any of them (with its alg)."""
    alg, enc = config.id_token_encrypted_response_alg, config.id_token_encrypted_response_enc
    if alg is not None:
        keys = ring.encryption_keys
        return Expected(keys, (alg,), (enc or CONTENT_ENCRYPTION_ALGORITHMS[0],), required=True)
    return expected_any(ring)


def expected_any(ring: KeyRing) -> Expected:
    """What a token that may come encrypted (a UserInfo or authorization response) may be: a
    plain signed token, or one encrypted to any of the client's encryption keys with its alg
    (the server chose by the client's registration, which the app cannot read)."""
    keys = ring.encryption_keys
    return Expected(keys, tuple(dict.fromkeys(key.alg for key in keys)))


def is_jwe(token: str) -> bool:
    """Whether ``token`` has the shape of a JWE compact serialisation (five parts)."""
    return token.count(".") == 4


def signed_token(token: str, expected: Expected, max_length: int = MAX_ISSUED_TOKEN_LENGTH) -> str:
    """The signed token (a compact JWS, still to be verified) that ``token`` is or holds:
    ``token`` itself when it is no JWE (unless encryption is required), else its decrypted
    content, which must be a JWS."""
    if not is_jwe(token):
        if expected.required:
            raise ValidationError(
                "the token is not encrypted, and id-token-encrypted-response-alg requires it"
            )
        return token
    if not expected.keys:
        raise ValidationError(
            "the token is encrypted (JWE), and no encryption key is configured; add a "
            'use = "enc" key, or turn the encryption off at the server'
        )
    return decrypt_compact(token, expected, max_length)


def decrypt_compact(
    token: str, expected: Expected, max_length: int = MAX_ISSUED_TOKEN_LENGTH
) -> str:
    """The content of a JWE compact serialisation decrypted with one of ``expected.keys``
    (the one its ``kid`` names, else those with its ``alg``, active first), which must be a
    signed JWS; :class:`ValidationError` otherwise."""
    if len(token) > max_length:
        raise ValidationError(f"encrypted token too long (over the {max_length}-byte limit)")
    parts = token.split(".")
    if len(parts) != 5 or len(parts[0]) > _MAX_HEADER_LENGTH:
        raise ValidationError("malformed encrypted token (five dot-separated parts expected)")
    header = _header(parts[0])
    alg, enc = _algorithms(header.get("alg"), header.get("enc"), expected)
    for key in _candidates(header, alg, expected.keys):
        plaintext = _decrypt_with(key, token, alg, enc)
        if plaintext is not None:
            return _inner_jws(plaintext)
    raise ValidationError("the encrypted token cannot be decrypted with the client's keys")


def _header(encoded: str) -> dict[str, object]:
    try:
        header = strict_json(b64url_decode(encoded))
    except (ValueError, RecursionError, binascii.Error):
        header = None
    if not isinstance(header, dict):
        raise ValidationError("malformed encrypted token (its header is not a JSON object)")
    if "zip" in header:
        raise ValidationError("compressed encrypted tokens (zip) are refused")
    if "crit" in header:
        raise ValidationError("encrypted token has critical header parameters")
    return header


def _algorithms(alg: object, enc: object, expected: Expected) -> tuple[str, str]:
    if isinstance(alg, str) and alg in REFUSED_KEY_MANAGEMENT:
        raise ValidationError("encrypted token refused: RSA1_5 is a padding oracle")
    if not isinstance(alg, str) or alg not in expected.algs or alg not in KEY_MANAGEMENT_ALGORITHMS:
        raise ValidationError(
            f"encrypted token refused: key management {_shown(alg)} is not expected "
            f"({', '.join(expected.algs) or 'none'})"
        )
    if not isinstance(enc, str) or enc not in expected.encs:
        raise ValidationError(
            f"encrypted token refused: content encryption {_shown(enc)} is not expected "
            f"({', '.join(expected.encs)})"
        )
    return alg, enc


def _candidates(
    header: dict[str, object], alg: str, keys: Sequence[EncryptionKey]
) -> list[EncryptionKey]:
    now = datetime.now(UTC)
    keys = [key for key in keys if key.decrypts_at(now)]  # a retired key past its date: gone
    kid = header.get("kid")
    if kid is not None:
        named = [key for key in keys if key.kid == kid]
        if not named:
            raise ValidationError(f"the token is encrypted to an unknown key (kid {_shown(kid)})")
        if named[0].alg != alg:
            raise ValidationError(
                f"the token is encrypted with {alg} to key {_shown(kid)}, which is for "
                f"{named[0].alg}"
            )
        return named
    chosen = sorted((k for k in keys if k.alg == alg), key=lambda k: _STATE_ORDER[k.state])
    if not chosen:
        raise ValidationError(f"the token is encrypted with {alg}, and no client key has it")
    return chosen


def _decrypt_with(key: EncryptionKey, token: str, alg: str, enc: str) -> bytes | None:
    """The plaintext, or ``None`` when this key does not open the token."""
    from joserfc import jwe as jose_jwe  # imported when first needed: ~10 ms at start-up
    from joserfc.errors import JoseError

    try:
        result = jose_jwe.decrypt_compact(token, _jose_key(key), registry=_registry(alg, enc))
    except (JoseError, InvalidTag, ValueError, TypeError, KeyError):
        return None  # not this key, or tampered with, or a header joserfc cannot use
    return result.plaintext


@functools.lru_cache(maxsize=64)
def _registry(alg: str, enc: str) -> JWERegistry:
    # Not strict about header names: servers replicate claims there (RFC 7519 §5.3:
    # oidc-provider sends iss and aud); crit is refused before this (see _header).
    from joserfc.jwe import JWERegistry

    return JWERegistry(algorithms=[alg, enc], strict_check_header=False)


def _jose_key(key: EncryptionKey) -> RSAKey | ECKey:
    """joserfc's key for ``key``, made once per key (joserfc derives what it decrypts with on
    first use: a key made per token pays that each time, a third of an RSA decryption)."""
    made = _JOSE_KEYS.get(key)
    if made is None:
        from joserfc.jwk import ECKey, RSAKey

        if isinstance(key.private_key, rsa.RSAPrivateKey):
            made = RSAKey.import_key(key.private_key)
        else:
            made = ECKey.import_key(key.private_key)  # type: ignore[arg-type]
        _JOSE_KEYS[key] = made
    return made


_JOSE_KEYS: weakref.WeakKeyDictionary[EncryptionKey, RSAKey | ECKey] = weakref.WeakKeyDictionary()


def _inner_jws(plaintext: bytes) -> str:
    """The decrypted content as a compact JWS whose header names a signature algorithm."""
    try:
        text = plaintext.decode("ascii")
    except UnicodeDecodeError:
        raise ValidationError("the encrypted token does not hold a signed token (JWS)") from None
    parts = text.split(".")
    if len(parts) != 3:
        raise ValidationError("the encrypted token does not hold a signed token (JWS)")
    try:
        header = strict_json(b64url_decode(parts[0]))
    except (ValueError, RecursionError, binascii.Error):
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise ValidationError("the encrypted token does not hold a signed token (JWS)")
    if header["alg"].lower() == "none" or not parts[2]:
        raise ValidationError("the encrypted token holds an unsigned token (alg none)")
    return text


def _shown(value: object) -> str:
    """A header value in a message: short and printable (it came from the token)."""
    text = repr(value) if not isinstance(value, str) else value
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:40] + ("..." if len(text) > 40 else "")
