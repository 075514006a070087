"""Client assertions and token validation: the adapter against raw cryptography and libraries."""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapter import OIDCClient, load_config
from adapter.keys.keyring import KeyRing, SigningKey, default_kid
from adapter.protocol.client_auth import PrivateKeyJwt
from bench.measure import Row, pair
from bench.requests import identity_server

ISSUER = "https://sso.example.com/realms/bench"
ALGORITHMS = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": lambda: ed25519.Ed25519PrivateKey.generate(),
}
TARGETS = {"RS256": 1.08, "PS256": 1.08, "ES256": 1.4, "EdDSA": 1.4}
# A cached token may cost at most 0.12 of one RSA verify (2 µs against its 17.5 µs on the
# development machine, where this was an absolute target): the ratio holds on slower machines.
CACHED_TARGET = 0.12


def raw_signer(alg: str, key: Any) -> Callable[[bytes], bytes]:
    """The bare cryptography call for ``alg`` (what any JWS library must do at least)."""
    if alg == "RS256":
        return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if alg == "PS256":
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return lambda data: key.sign(data, pss, hashes.SHA256())
    if alg == "ES256":
        return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    return lambda data: key.sign(data)


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "app",
        "sub": "app",
        "aud": ISSUER,
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }


def library_signers(alg: str, key: Any, kid: str) -> dict[str, Callable[[], object]]:
    """The same assertion built by joserfc, authlib and PyJWT (those that are installed)."""
    result: dict[str, Callable[[], object]] = {}
    header = {"alg": alg, "kid": kid}
    from joserfc import jwt as joserfc_jwt
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    kind = RSAKey if alg.startswith(("RS", "PS")) else ECKey if alg.startswith("ES") else OKPKey
    jose_key = kind.import_key(key)
    result["joserfc"] = lambda: joserfc_jwt.encode(header, claims(), jose_key, algorithms=[alg])
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from authlib.jose import jwt as authlib_jwt

        result["authlib"] = lambda: authlib_jwt.encode(header, claims(), pem)
    except ImportError:
        pass
    try:
        import jwt as pyjwt

        result["PyJWT"] = lambda: pyjwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})
    except ImportError:
        pass
    return result


def assertion_rows(number: int, rounds: int) -> list[Row]:
    rows = []
    for alg, make in ALGORITHMS.items():
        key = make()
        signing = SigningKey(kid=default_kid(key.public_key()), alg=alg, private_key=key)
        auth = PrivateKeyJwt("app", KeyRing([signing]), ISSUER)
        sample = auth.assertion().rsplit(".", 1)[0].encode()  # same size signing input
        raw = raw_signer(alg, key)
        ours, base = pair(auth.assertion, partial(raw, sample), number, rounds)
        rows.append(Row(f"assertion {alg}: adapter vs raw sign", ours, base, TARGETS[alg]))
        for name, build in library_signers(alg, key, signing.kid).items():
            theirs, ours_again = pair(build, auth.assertion, number, rounds)
            rows.append(Row(f"assertion {alg}: adapter vs {name}", ours_again, theirs, 1.0))
    return rows


def validation_rows(number: int, rounds: int, tokens: int) -> list[Row]:
    """First-seen and cached access-token validation against raw verify and libraries."""
    made = identity_server()
    server, token = made.key, made.token
    config = load_config(
        {"issuer": ISSUER, "client-id": "app", "bearer-only": True, "token-audiences": ["api"]}
    )
    client = OIDCClient(config, http=httpx.Client(transport=httpx.MockTransport(made.idp)))

    pool = [token(i) for i in range(tokens)]
    client.validate_access_token(pool[0])  # discovery and keys: fetched once, then cached
    fresh = iter(pool[1:] * (rounds * 2 + 2))
    public = server.public_key()

    def raw_verify(text: str) -> None:
        import base64

        signing_input, _, signature = text.rpartition(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        public.verify(raw, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())

    samples = iter(pool * (rounds * 2 + 2))
    first_count = min(number, max(1, tokens // (rounds * 2 + 2)))
    ours, base = pair(
        lambda: client.validate_access_token(next(fresh)),
        lambda: raw_verify(next(samples)),
        first_count,
        rounds,
    )
    client.validated._entries.clear()  # every token below is new to the cache again
    rows = [Row("validation RS256 first seen: adapter vs raw verify", ours, base, 1.8)]
    cached_token = pool[0]
    client.validate_access_token(cached_token)
    cached, verify = pair(
        lambda: client.validate_access_token(cached_token),
        lambda: raw_verify(next(samples)),
        number,
        rounds,
    )
    rows.append(Row("validation cached token vs raw RS256 verify", cached, verify, CACHED_TARGET))
    for name, decode in library_decoders(server).items():
        theirs, ours_again = pair(
            lambda decode=decode: decode(next(samples)),
            lambda: (client.validated._entries.clear(), client.validate_access_token(next(fresh))),
            first_count,
            rounds,
        )
        rows.append(Row(f"validation RS256 first seen: adapter vs {name}", ours_again, theirs, 1.0))
    client.close()
    return rows


def library_decoders(server: Any) -> dict[str, Callable[[str], object]]:
    result: dict[str, Callable[[str], object]] = {}
    from joserfc import jwt as joserfc_jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(server.public_key())

    def joserfc_decode(text: str) -> object:
        token = joserfc_jwt.decode(text, key, algorithms=["RS256"])
        joserfc_jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER}).validate(
            token.claims
        )
        return token

    result["joserfc"] = joserfc_decode
    try:
        import jwt as pyjwt

        pem = server.public_key()
        result["PyJWT"] = lambda text: pyjwt.decode(
            text, pem, algorithms=["RS256"], issuer=ISSUER, options={"verify_aud": False}
        )
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from authlib.jose import jwt as authlib_jwt

        def authlib_decode(text: str) -> object:
            claims = authlib_jwt.decode(text, server.public_key())
            claims.validate()
            return claims

        result["authlib"] = authlib_decode
    except ImportError:
        pass
    return result
