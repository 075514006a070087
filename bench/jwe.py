"""Encrypted ID tokens (issue 24): decrypt + verify against the raw ``cryptography`` operations.

An ID token encrypted with RSA-OAEP-256 / A256GCM to the client's RSA-2048 encryption key,
holding an RS256 ID token of the server's:

- **ours**: what the adapter does with it at the code exchange and on refresh:
  :func:`adapter.protocol.jwe.signed_token` (header checks, key choice, RSA-OAEP-256 unwrap of
  the content key, AES-GCM decryption, the inner JWS checked to be one), then the signature
  check (:func:`adapter.protocol.tokens.verify_jwt` with the server's key) and the ID token's
  claim rules;
- **baseline**: the least any implementation does: base64url decoding of the parts, the
  RSA-OAEP-256 unwrap, the AES-GCM decryption and the RS256 verification, each one
  ``cryptography`` call, nothing parsed or checked.

Both run turn about, one call each (:func:`bench.measure.alternated`). Target ≤ 1.3. The RSA
private-key operation dominates both; the row says what the adapter's own work adds to it.
"""

from __future__ import annotations

import base64
import time
from functools import partial
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwe
from joserfc.jwk import RSAKey

from adapter.jose import encode_header, make_signer, sign_compact
from adapter.keys.keyring import EncryptionKey
from adapter.protocol.jwe import Expected, signed_token
from adapter.protocol.tokens import check_claims, id_token_rules, run_check, verify_jwt
from bench.measure import Row, alternated

TARGET = 1.3  # issue 24
ISSUER = "https://sso.example.com/realms/bench"
NAME = "encrypted ID token RSA-OAEP-256/A256GCM: decrypt + verify vs raw cryptography ops"


def encrypted_id_token(server: Any, client_key: Any, kid: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": "app", "sub": "alice", "iat": now, "exp": now + 300,
        "nonce": "n-1", "sid": "s-1", "auth_time": now, "email": "alice@example.com",
    }  # fmt: skip
    inner = sign_compact(
        encode_header({"alg": "RS256", "kid": "server-1", "typ": "JWT"}),
        claims,
        make_signer("RS256", server),
    )
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": kid, "cty": "JWT"}
    public = RSAKey.import_key(client_key.public_key())
    return jwe.encrypt_compact(header, inner, public, algorithms=["RSA-OAEP-256", "A256GCM"])


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_decrypt_verify(client_key: Any, server_public: Any, token: str) -> None:
    """The bare operations: unwrap, decrypt, verify (what any implementation must do)."""
    header, wrapped, iv, ciphertext, tag = token.split(".")
    digest = hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
    cek = client_key.decrypt(_b64(wrapped), oaep)
    inner = AESGCM(cek).decrypt(_b64(iv), _b64(ciphertext) + _b64(tag), header.encode("ascii"))
    signing_input, _, signature = inner.rpartition(b".")
    server_public.verify(
        _b64(signature.decode("ascii")), signing_input, padding.PKCS1v15(), hashes.SHA256()
    )


def jwe_rows(calls: int) -> list[Row]:
    server = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = EncryptionKey(kid="enc-1", alg="RSA-OAEP-256", private_key=client_key)
    expected = Expected((key,), ("RSA-OAEP-256",), ("A256GCM",), required=True)
    token = encrypted_id_token(server, client_key, key.kid)
    server_public = server.public_key()
    rules = id_token_rules(ISSUER, "app", 30, "n-1")

    def ours() -> None:
        inner = signed_token(token, expected)
        claims = run_check(verify_jwt(inner, ("RS256",)), lambda need: [server_public])
        check_claims(claims, rules)

    ours()  # the token decrypts and verifies: the row measures working code
    made, base = alternated(
        ours, partial(raw_decrypt_verify, client_key, server_public, token), calls
    )
    return [Row(NAME, made, base, TARGET)]
