"""How the client proves who it is: one ``httpx.Auth`` per method.

The same objects serve every endpoint that wants client authentication (token,
introspection, revocation, PAR), for ``httpx.Client`` and ``httpx.AsyncClient`` alike: none of
them does I/O of its own, so one ``auth_flow`` body serves both. Assertion methods build a new
JWT for every request httpx sends, retries included, so each carries a fresh ``jti``.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode

import httpx

from adapter.config.model import TLS_METHODS, AdapterConfig, assertion_timing_problem
from adapter.config.secret import Secret
from adapter.errors import ConfigError
from adapter.jose import Signer, encode_header, make_hmac_signer, sign_compact
from adapter.keys.keyring import KeyRing, SigningKey
from adapter.protocol.flows import KID_EXTENSION

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
Clock = Callable[[], float]


class ClientSecretBasic(httpx.Auth):
    """``client_secret_basic``: HTTP Basic with id and secret form-encoded (RFC 6749 §2.3.1).

    The form-encoding matters for secrets with ``:``, ``+``, ``%`` or non-ASCII characters;
    Keycloak and oidc-provider decode it.
    """

    def __init__(self, client_id: str, secret: Secret) -> None:
        self.client_id = client_id
        pair = f"{quote_plus(client_id)}:{quote_plus(secret.reveal())}"
        self._header = "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return f"ClientSecretBasic(client_id={self.client_id!r})"


class _FormAuth(httpx.Auth):
    """Client authentication carried in the form body of a POST."""

    requires_request_body = True

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def form_fields(self) -> list[tuple[str, str]]:
        """The fields to add to this request's form body."""
        raise NotImplementedError

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield with_form_fields(request, self.form_fields())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r})"


def with_form_fields(request: httpx.Request, fields: list[tuple[str, str]]) -> httpx.Request:
    """A copy of a form POST with ``fields`` added (replacing any of the same name)."""
    names = {name for name, _ in fields}
    existing = parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True)
    body = urlencode([(k, v) for k, v in existing if k not in names] + fields).encode("ascii")
    headers = request.headers.copy()
    headers.pop("content-length", None)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return httpx.Request(
        request.method, request.url, headers=headers, content=body, extensions=request.extensions
    )


class TlsClientAuth(_FormAuth):
    """``tls_client_auth`` and ``self_signed_tls_client_auth`` (RFC 8705 §2): the TLS client
    certificate (the connection's, :mod:`adapter.protocol._connection`) authenticates the
    client; the form only names it."""

    def form_fields(self) -> list[tuple[str, str]]:
        return [("client_id", self.client_id)]


class ClientSecretPost(_FormAuth):
    """``client_secret_post``: id and secret as form fields."""

    def __init__(self, client_id: str, secret: Secret) -> None:
        super().__init__(client_id)
        self._secret = secret

    def form_fields(self) -> list[tuple[str, str]]:
        return [("client_id", self.client_id), ("client_secret", self._secret.reveal())]


class _AssertionAuth(_FormAuth):
    """A signed JWT client assertion (RFC 7523 §2.2) on every request.

    Claims per docs/architecture.md: ``iss = sub = client_id``, one ``aud`` string, a fresh
    ``jti`` of 192 random bits, ``iat = nbf = now - backdate`` and ``exp = iat + lifetime``:
    backdating moves the whole window, so ``exp - iat`` stays the configured lifetime (a server
    may bound that distance, and Keycloak bounds the age of ``iat``).
    """

    def __init__(
        self,
        client_id: str,
        audience: str,
        lifetime: int = 60,
        backdate: int = 0,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(client_id)
        problem = assertion_timing_problem(lifetime, backdate)
        if problem is not None:
            raise ConfigError(f"credentials.assertion-backdate: {problem}")
        self.audience = audience
        self.lifetime = lifetime
        self.backdate = backdate
        self._clock = clock

    def signer(self) -> tuple[bytes, Signer]:
        """The encoded header and signing function to use now."""
        raise NotImplementedError

    def assertion(self) -> str:
        """A new client assertion."""
        header, sign = self.signer()
        return self.assertion_with(header, sign)

    def assertion_with(self, header: bytes, sign: Signer) -> str:
        """A new client assertion with this encoded header and signer."""
        issued = int(self._clock()) - self.backdate
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.lifetime,
        }
        return sign_compact(header, claims, sign)

    def form_fields(self) -> list[tuple[str, str]]:
        return self.assertion_fields(self.assertion())

    def assertion_fields(self, assertion: str) -> list[tuple[str, str]]:
        """The form fields that carry ``assertion`` (RFC 7523 §2.2)."""
        return [
            ("client_id", self.client_id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]


class ClientSecretJwt(_AssertionAuth):
    """``client_secret_jwt``: the assertion is signed with the client secret (HS256/384/512)."""

    def __init__(
        self,
        client_id: str,
        secret: Secret,
        audience: str,
        algorithm: str = "HS256",
        *,
        lifetime: int = 60,
        backdate: int = 0,
        typ: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(client_id, audience, lifetime, backdate, clock)
        header: dict[str, Any] = {"alg": algorithm}
        if typ:
            header["typ"] = typ
        self._signing = (
            encode_header(header),
            make_hmac_signer(algorithm, secret.reveal().encode()),
        )

    def signer(self) -> tuple[bytes, Signer]:
        return self._signing


class PrivateKeyJwt(_AssertionAuth):
    """``private_key_jwt``: the assertion is signed by the ring's active key, with its kid.

    Headers are serialised once per key when the object is built; each request only asks the
    ring which key is active now, so an ``activate-at`` switch needs no rebuild. Just after a
    key switch a server may still hold the old JWKS and refuse the new key with
    ``invalid_client``: then ``fallback()`` names the previous key and the request is sent once
    more, signed by it (with a fresh ``jti``), and logged. The flows driver decides that after
    reading the (size-capped) answer: see :meth:`retry_auth`.
    """

    def __init__(
        self,
        client_id: str,
        ring: KeyRing,
        audience: str,
        *,
        lifetime: int = 60,
        backdate: int = 0,
        typ: str | None = None,
        x5t: bool = False,
        x5t_s256: bool = False,
        fallback: Callable[[], SigningKey | None] | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(client_id, audience, lifetime, backdate, clock)
        if not ring.keys:
            raise ConfigError("credentials.keys: private_key_jwt needs at least one key")
        self.ring = ring
        self._header_options = {"typ": typ, "x5t": x5t, "x5t_s256": x5t_s256}
        self._headers = {key.kid: self._header(key) for key in ring.keys}
        self._fallback = fallback

    def _header(self, key: SigningKey) -> bytes:
        return encode_header(assertion_header(key, **self._header_options))  # type: ignore[arg-type]

    def signer(self) -> tuple[bytes, Signer]:
        key = self.ring.active()
        return self._headers[key.kid], key.sign

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self.ring.active()
        yield self._signed(request, key)

    def _signed(self, request: httpx.Request, key: SigningKey) -> httpx.Request:
        """``request`` with an assertion by ``key``, which it names in its extensions."""
        header = self._headers.get(key.kid) or self._header(key)
        fields = self.assertion_fields(self.assertion_with(header, key.sign))
        signed = with_form_fields(request, fields)
        signed.extensions = {**signed.extensions, KID_EXTENSION: key.kid}
        return signed

    def retry_auth(self, refused_kid: str | None) -> httpx.Auth | None:
        """An auth signing with the previous key, if a request signed by ``refused_kid`` may
        have been refused only because the server's JWKS cache predates a key switch."""
        previous = self._fallback() if self._fallback is not None else None
        if previous is None or previous.kid == refused_kid:
            return None
        return _PinnedKey(self, previous)


class _PinnedKey(httpx.Auth):
    """private_key_jwt with one given key (the previous-key retry)."""

    requires_request_body = True

    def __init__(self, owner: PrivateKeyJwt, key: SigningKey) -> None:
        self._owner, self.key = owner, key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self._owner._signed(request, self.key)


def assertion_header(
    key: SigningKey, *, typ: str | None = None, x5t: bool = False, x5t_s256: bool = False
) -> dict[str, Any]:
    """The JWS header of an assertion signed by ``key`` (thumbprints only with a certificate)."""
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid}
    if typ:
        header["typ"] = typ
    if x5t and key.x5t:
        header["x5t"] = key.x5t
    if x5t_s256 and key.x5t_s256:
        header["x5t#S256"] = key.x5t_s256
    return header


def expected_certificate(config: AdapterConfig, ring: KeyRing) -> str | None:
    """The thumbprint the tokens must come back bound to: mTLS under a FAPI profile (the
    profile counts on the certificate to sender-constrain them); else ``None``."""
    if config.profile == "none" or config.credentials.method not in TLS_METHODS:
        return None
    return ring.active().x5t_s256


def client_auth(
    config: AdapterConfig,
    ring: KeyRing,
    token_endpoint: str | None = None,
    fallback: Callable[[], SigningKey | None] | None = None,
) -> httpx.Auth | None:
    """The ``httpx.Auth`` for the configured method (``None`` for a public client).

    ``token_endpoint`` is needed when ``assertion-audience = "token-endpoint"``.
    """
    credentials = config.credentials
    method = credentials.method
    if method == "none":
        return None
    if method in ("tls_client_auth", "self_signed_tls_client_auth"):
        return TlsClientAuth(config.client_id)
    if method in ("client_secret_basic", "client_secret_post"):
        assert credentials.secret is not None  # load_config guarantees it
        kind = ClientSecretBasic if method == "client_secret_basic" else ClientSecretPost
        return kind(config.client_id, credentials.secret)
    audience = credentials.assertion_audience
    if audience == "issuer":
        audience = config.issuer
    elif audience == "token-endpoint":
        if token_endpoint is None:
            raise ConfigError("credentials.assertion-audience: the token endpoint is not known")
        audience = token_endpoint
    common: dict[str, Any] = {
        "lifetime": credentials.assertion_lifetime,
        "backdate": credentials.assertion_backdate,
        "typ": credentials.assertion_typ,
    }
    if method == "client_secret_jwt":
        assert credentials.secret is not None
        return ClientSecretJwt(
            config.client_id,
            credentials.secret,
            audience,
            credentials.algorithm or "HS256",
            **common,
        )
    return PrivateKeyJwt(
        config.client_id,
        ring,
        audience,
        x5t=credentials.assertion_x5t,
        x5t_s256=credentials.assertion_x5t_s256,
        fallback=fallback,
        **common,
    )
