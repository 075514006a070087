"""The one client the development identity server serves, and how it proves who it is.

Registered from the app's own configuration, as a Keycloak admin would register it:
``client_secret_basic``/``client_secret_post`` ("Client Id and Secret") with the configured
secret, ``client_secret_jwt`` ("Signed JWT with Client Secret") with the same secret as HMAC key,
``private_key_jwt`` ("Signed JWT", "Use JWKS URL") with the public keys the app publishes at
``<app URL>/k_jwks``, fetched when an assertion names a key not seen yet (as Keycloak does), and
a public client with its id alone.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import httpx

from adapter.config import AdapterConfig
from adapter.config._readers import is_loopback
from adapter.errors import ProviderError
from adapter.jose import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    make_hmac_signer,
    parse_compact,
    strict_json,
    verify_signature,
)
from adapter.protocol.provider import ServerKeys

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_SKEW = 30  # seconds of clock difference an assertion may show (Keycloak allows a few too)
_REFETCH_AFTER = 1.0  # seconds between two fetches of the app's JWKS (Keycloak: 10)
_SECRET_METHODS = ("client_secret_basic", "client_secret_post")


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class ClientSettings:
    """What the server knows of the client: from the app's configuration and the app's URL."""

    client_id: str
    method: str
    secret: str | None = field(repr=False)  # never in a repr or a log line
    public: bool
    redirect_uri: str | None  # the configured one: then the only one allowed
    app_url: str  # where the app runs: its origin is allowed, its JWKS fetched

    @classmethod
    def of(cls, config: AdapterConfig, app_url: str) -> ClientSettings:
        secret = config.credentials.secret
        return cls(
            config.client_id,
            config.credentials.method,
            secret.reveal() if secret is not None else None,
            config.public_client or config.credentials.method == "none",
            config.web.redirect_uri,
            app_url.rstrip("/"),
        )

    def redirect_allowed(self, uri: str) -> bool:
        """A login may return to the configured redirect URI, else to any loopback URL or the
        app's origin (Keycloak's "Valid redirect URIs" for a local app)."""
        if self.redirect_uri is not None:
            return uri == self.redirect_uri
        return self.return_allowed(uri)

    def return_allowed(self, uri: str) -> bool:
        """Where a logout may return: a loopback URL, the app's or the redirect URI's origin."""
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or parts.fragment or not parts.hostname:
            return False
        known = {origin(self.app_url), *([origin(self.redirect_uri)] if self.redirect_uri else [])}
        return (parts.hostname is not None and is_loopback(parts.hostname)) or origin(uri) in known


class ClientAuthenticator:
    """Checks a token, revocation or introspection request's client authentication against
    :class:`ClientSettings`; ``audiences`` are what an assertion's ``aud`` may name."""

    def __init__(
        self,
        client: ClientSettings,
        jwks_url: str,
        audiences: tuple[str, ...],
        say: Callable[[str], None],
    ) -> None:
        self.client = client
        self.jwks_url = jwks_url
        self._audiences = audiences
        self._say = say
        self._lock = threading.Lock()
        self._keys: ServerKeys | None = None
        self._fetched_at = 0.0
        self._seen_jti: dict[str, float] = {}  # a client assertion is used once
        self._http = httpx.Client(timeout=5, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def authenticate(self, headers: Message, form: Mapping[str, str]) -> str | None:
        """None when the request authenticates the client, else why not (for the client)."""
        authorization = str(headers.get("Authorization", ""))
        if authorization[:6].lower() == "basic ":
            return self._basic(authorization[6:])
        if form.get("client_assertion_type") == JWT_BEARER:
            return self._assertion(form.get("client_assertion", ""))
        if "client_secret" in form:
            return self._secret("client_secret_post", form.get("client_id"), form["client_secret"])
        if form.get("client_id") != self.client.client_id:
            return f"unknown client; this server serves client {self.client.client_id!r}"
        if not self.client.public:
            return f"client authentication is required ({self.client.method})"
        return None

    def _basic(self, encoded: str) -> str | None:
        try:
            pair = base64.b64decode(encoded, validate=True).decode("utf-8")
        except ValueError:
            return "the Basic authorization header is malformed"
        client_id, _, secret = pair.partition(":")
        return self._secret("client_secret_basic", unquote_plus(client_id), unquote_plus(secret))

    def _secret(self, used: str, client_id: str | None, secret: str) -> str | None:
        if client_id != self.client.client_id:
            return f"unknown client; this server serves client {self.client.client_id!r}"
        if self.client.method not in _SECRET_METHODS:
            return f"{used} is not this client's authentication ({self.client.method})"
        expected = (self.client.secret or "").encode()
        if not expected or not hmac.compare_digest(secret.encode(), expected):
            return "wrong client secret"
        return None

    def _assertion(self, assertion: str) -> str | None:
        try:
            jws = parse_compact(assertion)
            claims = strict_json(jws.payload)
        except (ValueError, RecursionError):
            return "the client assertion is not a JWS"
        if not isinstance(claims, dict):
            return "the client assertion's payload is not a JSON object"
        problem = self._assertion_claims(claims)
        if problem is not None:
            return problem
        alg = jws.header.get("alg")
        if alg in HMAC_ALGORITHMS and self.client.method == "client_secret_jwt":
            sign = make_hmac_signer(str(alg), (self.client.secret or "").encode())
            valid = bool(self.client.secret) and hmac.compare_digest(
                sign(jws.signing_input), jws.signature
            )
        elif alg in ASYMMETRIC_ALGORITHMS and self.client.method == "private_key_jwt":
            kid = jws.header.get("kid")
            keys = self._app_keys(kid if isinstance(kid, str) else None, str(alg))
            if isinstance(keys, str):
                return keys
            valid = any(
                verify_signature(str(alg), k, jws.signing_input, jws.signature) for k in keys
            )
        else:
            return f"an assertion signed with {alg!r} is not this client's ({self.client.method})"
        return None if valid else "the client assertion's signature does not verify"

    def _assertion_claims(self, claims: Mapping[str, Any]) -> str | None:
        now = time.time()
        if claims.get("iss") != self.client.client_id or claims.get("sub") != self.client.client_id:
            return f"the assertion's iss and sub must be the client id {self.client.client_id!r}"
        audience = claims.get("aud")
        named = audience if isinstance(audience, list) else [audience]
        if not any(a in self._audiences for a in named):
            return f"the assertion's aud must be one of {', '.join(self._audiences)}"
        exp, jti = claims.get("exp"), claims.get("jti")
        if not isinstance(exp, int | float) or exp < now - _SKEW:
            return "the client assertion has expired (or has no exp)"
        if not isinstance(jti, str) or not jti:
            return "the client assertion has no jti"
        with self._lock:
            self._seen_jti = {k: v for k, v in self._seen_jti.items() if v > now - _SKEW}
            if jti in self._seen_jti:
                return "the client assertion was used before (same jti)"
            self._seen_jti[jti] = float(exp)
        return None

    def _app_keys(self, kid: str | None, alg: str) -> list[Any] | str:
        """The app's public keys for ``kid``/``alg``: cached, fetched again for a new kid."""
        with self._lock:
            keys = self._keys
            if keys is not None and keys.find(kid, alg):
                return keys.find(kid, alg)
            if keys is not None and time.monotonic() - self._fetched_at < _REFETCH_AFTER:
                return f"no key with kid {kid!r} at {self.jwks_url}"
            try:
                keys = self._fetch()
            except (httpx.HTTPError, ProviderError, ValueError) as exc:
                self._say(f"could not fetch the client's keys from {self.jwks_url}: {exc}")
                return (
                    f"the server could not fetch the client's keys from {self.jwks_url} "
                    f"({type(exc).__name__}); start the app there, or give dev-server --app-url"
                )
            self._keys, self._fetched_at = keys, time.monotonic()
        found = keys.find(kid, alg)
        return found or f"no key with kid {kid!r} at {self.jwks_url}"

    def _fetch(self) -> ServerKeys:
        response = self._http.get(self.jwks_url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise ProviderError(f"HTTP {response.status_code}")
        document = strict_json(response.content)
        if not isinstance(document, dict):
            raise ProviderError("not a JWKS")
        keys = ServerKeys(document)
        self._say(f"fetched {len(keys)} client key(s) from {self.jwks_url}")
        return keys
