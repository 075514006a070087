"""The test issuer's keys and the tokens it signs (see :mod:`adapter.testing`).

Tokens look like Keycloak's: realm roles in ``realm_access``, client roles in
``resource_access.<client id>``. Access tokens are ES256; ID tokens are signed as each client's
configuration says (``id-token-signing-alg``), with a key per algorithm made when a client asks
for it. The minter also remembers the clients handed to the issuer: the audiences each accepts
and the algorithm of its ID tokens.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from adapter.config import AdapterConfig
from adapter.errors import ConfigError
from adapter.jose import encode_header, sign_compact
from adapter.keys.generate import generate_private_key
from adapter.keys.keyring import SigningKey, default_kid

log = logging.getLogger(__name__)
FIRST_USE_ID_ALG = "RS256"  # the adapter's default id-token-signing-alg (and Keycloak's)


@dataclass(frozen=True)
class TestUser:
    """Who signs in: ``sub``, Keycloak realm ``roles``, this client's ``client_roles``, extra
    ``scopes`` granted beyond the configured ones, and any other ``claims`` (name, email ...)."""

    __test__ = False  # a helper, not a test class for pytest to collect

    sub: str
    roles: tuple[str, ...] = ()
    client_roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        sub: str,
        roles: Iterable[str] = (),
        client_roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        claims: Mapping[str, Any] | None = None,
    ) -> TestUser:
        """Built from any iterables; a single string counts as one name, not as letters."""
        return cls(sub, _names(roles), _names(client_roles), _names(scopes), dict(claims or {}))


def as_user(
    user: str | TestUser,
    roles: Iterable[str],
    client_roles: Iterable[str],
    scopes: Iterable[str],
    claims: Mapping[str, Any] | None,
) -> TestUser:
    if isinstance(user, TestUser):
        return user
    return TestUser.of(user, roles, client_roles, scopes, claims)


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


@dataclass
class Grant:
    """What a code or refresh token stands for at the test issuer."""

    user: TestUser
    client_id: str
    scope: str
    nonce: str | None = None
    redirect_uri: str = ""
    code_challenge: str | None = None


class TokenMinter:
    """The keys of the issuer at ``issuer`` and the tokens they sign, valid ``token_lifetime``
    seconds; thread-safe (an app's tests may drive it from several threads)."""

    def __init__(self, issuer: str, token_lifetime: int) -> None:
        self.issuer = issuer
        self.token_lifetime = token_lifetime
        private = ec.generate_private_key(ec.SECP256R1())
        self._key = SigningKey(default_kid(private.public_key()), "ES256", private)
        self._access_header = encode_header(
            {"alg": self._key.alg, "kid": self._key.kid, "typ": "at+jwt"}
        )
        self._lock = threading.Lock()
        self._id_keys: dict[str, SigningKey] = {self._key.alg: self._key}
        self._id_algs: dict[str, str] = {}  # client id -> its id-token-signing-alg
        self._audiences: dict[str, tuple[str, ...]] = {}  # client id -> what its app accepts
        self.id_key(FIRST_USE_ID_ALG)

    def trust(self, config: AdapterConfig) -> None:
        """Serve the client of ``config``: its ID-token key is made (and published) before the
        app fetches the JWKS; its access tokens are for the audiences it accepts."""
        self.id_key(config.id_token_signing_alg)
        with self._lock:
            self._audiences[config.client_id] = config.token_audiences or (config.client_id,)
            self._id_algs[config.client_id] = config.id_token_signing_alg

    def register(self, client_id: str) -> None:
        """Serve ``client_id`` on first use (an app wired with ``http=`` only, its configuration
        never handed here), as the adapter's defaults expect: ID tokens signed RS256 (its
        default ``id-token-signing-alg``), access tokens for the client id. A client already
        known keeps what its configuration said."""
        if not client_id:
            return
        with self._lock:
            known = client_id in self._audiences
            if not known:
                self._audiences[client_id] = (client_id,)
                self._id_algs[client_id] = FIRST_USE_ID_ALG
        if not known:
            log.info("TEST ISSUER %s: client %r registered on first use", self.issuer, client_id)

    def id_key(self, alg: str) -> SigningKey:
        """The key that signs ID tokens with ``alg``, made on first use (RS256's before the
        app first fetches the JWKS, for a client that registers on first use)."""
        with self._lock:
            key = self._id_keys.get(alg)
        if key is None:
            private = generate_private_key(alg)
            made = SigningKey(default_kid(private.public_key()), alg, private)
            with self._lock:
                key = self._id_keys.setdefault(alg, made)
        return key

    def published(self) -> dict[str, SigningKey]:
        """Every key the JWKS holds, by algorithm."""
        with self._lock:
            return dict(self._id_keys)

    def access_token(self, grant: Grant, audience: tuple[str, ...] | None) -> str:
        """An access token for ``grant``: for ``audience``, else what its client accepts."""
        now = int(time.time())
        with self._lock:
            accepted = self._audiences.get(grant.client_id, (grant.client_id,))
        claims = {
            **self.user_claims(grant.user, grant.client_id),
            "iss": self.issuer,
            "aud": list(audience if audience is not None else accepted),
            "azp": grant.client_id,
            "client_id": grant.client_id,
            "scope": grant.scope,
            "iat": now,
            "exp": now + self.token_lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        return sign_compact(self._access_header, claims, self._key.sign)

    def id_token(self, user: TestUser, client_id: str, nonce: str | None = None) -> str:
        """An ID token for ``user`` and ``client_id``, with the client's
        ``id-token-signing-alg`` (ES256 for a client no configuration named)."""
        now = int(time.time())
        claims = {
            **self.user_claims(user, client_id),
            "iss": self.issuer,
            "aud": client_id,
            "azp": client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + self.token_lifetime,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        with self._lock:
            alg = self._id_algs.get(client_id, self._key.alg)
        key = self.id_key(alg)
        header = encode_header({"alg": key.alg, "kid": key.kid, "typ": "JWT"})
        return sign_compact(header, claims, key.sign)

    def user_claims(self, user: TestUser, client_id: str) -> dict[str, Any]:
        """Keycloak's shape: realm roles in ``realm_access``, client roles in
        ``resource_access.<client id>``."""
        claims: dict[str, Any] = {"sub": user.sub, "preferred_username": user.sub}
        claims.update(user.claims)
        claims["sub"] = user.sub
        if user.roles:
            claims["realm_access"] = {"roles": list(user.roles)}
        if user.client_roles:
            claims["resource_access"] = {client_id: {"roles": list(user.client_roles)}}
        return claims

    def only_client(self) -> str:
        """The one client handed to the issuer (else a ConfigError asking for ``client_id=``)."""
        with self._lock:
            clients = list(self._audiences)
        if len(clients) != 1:
            raise ConfigError(
                "TestIssuer.access_token: pass client_id= (the issuer serves "
                f"{len(clients)} clients: {', '.join(clients) or 'none yet'})"
            )
        return clients[0]
