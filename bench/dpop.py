"""DPoP (issue 23): making a proof, and a DPoP-bound request at the resource server.

- **Proof creation** (client side): ``make_proof(key, "GET", url, access_token=token)`` against
  the raw ``cryptography`` signature of a signing input of the same size, one call each, turn
  about (:func:`bench.measure.alternated`). For ES256 the baseline is what any JWS ES256
  signature costs at least: the DER signature ``cryptography`` returns *and* its conversion to
  ``r || s`` (RFC 7518 §3.4), done the fastest way measured (slicing the DER; see
  :func:`raw_es256`). An informational row compares the proof with the bare DER signature.
  EdDSA's raw signature is already what JWS wants. Target ≤ 1.15 for both.
- **A DPoP request, token first seen**: the adapter in bearer mode (an in-process ASGI call,
  the RS256 ``MockTransport`` identity server of :mod:`bench.requests`), each call a new
  access token bound to the client's key (``cnf.jkt``) with a fresh proof, against a new
  bearer token each call (its decision not remembered), turn about. Tokens and proofs are made
  before the clock runs: only the resource server's work is timed. Target ≤ 1.6.
- **A DPoP request, token seen before**: the same token every call (its signature check comes
  from the validated-token cache), a fresh proof every call (the proof's signature, claims and
  ``jti`` are checked every time; the adapter does not remember DPoP decisions by token, as a
  proof differs each time). What it adds to the bare app, against what Starlette's
  ``SessionMiddleware`` adds for reading a valid cookie, as the session rows report
  (informational: see docs/performance.md, "DPoP").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from adapter import OIDCMiddleware
from adapter.jose import encode_header, make_signer, parse_compact, sign_compact, verify_signature
from adapter.protocol.dpop import DPoPKey, make_proof, proof_key
from bench.measure import Row, alternated, timed
from bench.requests import (
    ISSUER,
    Headers,
    Server,
    added_row,
    asgi_caller,
    bare_asgi,
    config,
    identity_server,
    session_middleware_caller,
)

PROOF_TARGET = 1.15  # issue 23: a proof against the raw signature JWS needs
FIRST_SEEN_TARGET = 1.6  # issue 23: proof + token check against a bearer token's first check
PATH = "/api/reports"
URL = f"http://app.example.com{PATH}"  # as the adapter rebuilds it from asgi_caller's request


def raw_es256(private_key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """The least a JWS ES256 signature costs: ``cryptography``'s DER signature, and ``r || s``
    read out of it by slicing (0.5 µs here, against 2.4 µs for ``decode_dss_signature`` and two
    ``int.to_bytes``). A P-256 DER signature is ``30 L 02 Lr r 02 Ls s`` with L < 128."""
    ecdsa = ec.ECDSA(hashes.SHA256())

    def sign(data: bytes) -> bytes:
        der = private_key.sign(data, ecdsa)
        r_end = 4 + der[3]
        r, s = der[4:r_end], der[r_end + 2 :]
        return r[-32:].rjust(32, b"\x00") + s[-32:].rjust(32, b"\x00")

    return sign


def proof_rows(calls: int, access_token: str) -> list[Row]:
    """``make_proof`` against the raw signature, ES256 and EdDSA."""
    return es256_proof_rows(calls, access_token) + eddsa_proof_rows(calls, access_token)


def es256_proof_rows(calls: int, access_token: str) -> list[Row]:
    key = DPoPKey.generate("ES256")
    ours = partial(make_proof, key, "GET", URL, access_token=access_token)
    sample = ours().rpartition(".")[0].encode()  # a signing input of the same size
    private_key: Any = key._key
    made, base = alternated(ours, partial(raw_es256(private_key), sample), calls)
    name = "DPoP proof ES256: make_proof vs raw sign + DER->raw (r||s)"
    rows = [Row(name, made, base, PROOF_TARGET)]
    der_only = partial(private_key.sign, sample, ec.ECDSA(hashes.SHA256()))
    made, base = alternated(ours, der_only, calls)
    rows.append(Row("DPoP proof ES256: make_proof vs raw DER sign alone", made, base))
    return rows


def eddsa_proof_rows(calls: int, access_token: str) -> list[Row]:
    key = DPoPKey.generate("EdDSA")
    ours = partial(make_proof, key, "GET", URL, access_token=access_token)
    sample = ours().rpartition(".")[0].encode()
    private_key: Any = key._key
    made, base = alternated(ours, partial(private_key.sign, sample), calls)
    return [Row("DPoP proof EdDSA: make_proof vs raw sign", made, base, PROOF_TARGET)]


class BoundTokens:
    """Access tokens from the bench identity server (RS256, as :mod:`bench.requests` signs
    them), bound to a DPoP key (``cnf.jkt``) or not."""

    def __init__(self, key: Any) -> None:
        self._sign = make_signer("RS256", key)
        self._header = encode_header({"alg": "RS256", "kid": "s1", "typ": "at+jwt"})
        self._now = int(time.time())

    def token(self, index: int, jkt: str | None = None) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER, "sub": f"u{index}", "aud": "api", "client_id": "app",
            "iat": self._now, "exp": self._now + 3600, "jti": f"d{index}", "scope": "api:read",
        }  # fmt: skip
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        return sign_compact(self._header, claims, self._sign)


def dpop_headers(key: DPoPKey, token: str) -> Headers:
    """The headers of one DPoP request: the token and a fresh proof bound to it."""
    return [
        (b"authorization", f"DPoP {token}".encode()),
        (b"dpop", make_proof(key, "GET", URL, access_token=token).encode()),
    ]


def request_rows(made: Server, calls: int, number: int, rounds: int) -> list[Row]:
    """A DPoP request with a first-seen token against a first-seen bearer token (turn about),
    per proof algorithm, and with a token seen before against what SessionMiddleware adds."""
    tokens = BoundTokens(made.key)
    adapter = OIDCMiddleware(
        bare_asgi,
        config(**{"bearer-only": True}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(made.idp)),
    )
    rows: list[Row] = []
    serial = iter(range(10**9))
    for alg in FIRST_SEEN_ALGS:
        rows += first_seen_rows(adapter, tokens, DPoPKey.generate(alg), calls, serial)
    key = DPoPKey.generate("ES256")
    seen = tokens.token(next(serial), key.jkt)
    proofs: Iterator[Headers] = iter(
        [dpop_headers(key, seen) for _ in range(number * rounds + number // 10 + 2)]
    )
    dpop_seen = asgi_caller(adapter, PATH, extra=lambda: next(proofs))
    assert dpop_seen() == 200, "the DPoP request must be let in"
    sessions = session_middleware_caller(bare_asgi)
    bare = asgi_caller(bare_asgi, PATH)
    seen_t, session_t, bare_t = timed([dpop_seen, sessions, bare], number, rounds)
    rows.append(
        added_row(
            "DPoP request, token seen before (proof checked): added vs SessionMiddleware's",
            seen_t, session_t, bare_t, None,
        )
    )  # fmt: skip
    return rows


FIRST_SEEN_ALGS = ("ES256", "EdDSA", "PS256")


def first_seen_rows(
    adapter: OIDCMiddleware, tokens: BoundTokens, key: DPoPKey, calls: int, serial: Iterator[int]
) -> list[Row]:
    """For one proof algorithm: a DPoP request with a new token each call against a bearer
    request with a new token (target ≤ 1.6), and the same against the bearer request plus the
    verification of a proof's signature (informational: what the adapter adds around the
    one operation a DPoP request cannot skip, whose cost depends on the client's algorithm)."""
    needed = calls + calls // 20 + 2
    bound = [dpop_headers(key, tokens.token(next(serial), key.jkt)) for _ in range(2 * needed)]
    plain = [
        [(b"authorization", f"Bearer {tokens.token(next(serial))}".encode())]
        for _ in range(2 * needed)
    ]
    first_bound, more_bound = iter(bound[:needed]), iter(bound[needed:])
    first_plain, more_plain = iter(plain[:needed]), iter(plain[needed:])
    dpop_first = asgi_caller(adapter, PATH, extra=lambda: next(first_bound))
    bearer_first = asgi_caller(adapter, PATH, extra=lambda: next(first_plain))
    assert dpop_first() == 200 == bearer_first(), "both requests must be let in"
    subject, baseline = alternated(dpop_first, bearer_first, calls)
    name = f"DPoP request {key.alg}, first-seen token: proof + token check vs bearer first check"
    rows = [Row(name, subject, baseline, FIRST_SEEN_TARGET)]
    verify = raw_proof_verify(bound[0][1][1].decode())
    dpop_again = asgi_caller(adapter, PATH, extra=lambda: next(more_bound))
    bearer_again = asgi_caller(adapter, PATH, extra=lambda: next(more_plain))

    def bearer_and_verify() -> object:
        verify()
        return bearer_again()

    subject, baseline = alternated(dpop_again, bearer_and_verify, calls)
    name = (
        f"DPoP request {key.alg}, first-seen token vs bearer first check + proof signature verify"
    )
    rows.append(Row(name, subject, baseline))
    return rows


def raw_proof_verify(proof: str) -> Callable[[], bool]:
    """The verification of ``proof``'s signature alone (``adapter.jose.verify_signature``:
    ``cryptography``'s verify, for ECDSA after ``r || s`` back to DER), the key imported
    beforehand."""
    jws = parse_compact(proof, 8192)
    key, _ = proof_key(jws.header["jwk"], jws.header["alg"])
    return partial(verify_signature, jws.header["alg"], key, jws.signing_input, jws.signature)


def dpop_rows(calls: int, number: int, rounds: int) -> list[Row]:
    """Issue 23's rows: proofs (``calls`` each, turn about), then requests (a third of
    ``calls`` first seen, turn about; ``number`` times ``rounds`` seen before)."""
    made = identity_server()
    rows = proof_rows(calls, made.token(0))  # a realistic access token for ``ath``
    return rows + request_rows(made, max(10, calls // 3), number, rounds)
