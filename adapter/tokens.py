"""Tokens: the :class:`TokenSet` a token endpoint returns, and what makes a JWT acceptable.

Signature checks live in :mod:`adapter.jose`; keys come from :mod:`adapter.provider`. This
module holds the claim rules (OpenID Connect Core §3.1.3.7 for ID tokens, RFC 9068 for JWT
access tokens) and the cache that lets a token seen again cost one dictionary look-up.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapter.errors import ProviderError, ValidationError
from adapter.jose import CompactJws, PublicKey, parse_compact, strict_json, verify_signature


@dataclass(frozen=True, repr=False)
class TokenSet:
    """A token response: access token and, when issued, refresh and ID tokens.

    ``expires_at`` is a Unix time computed from ``expires_in`` when the response arrived.
    The repr shows which tokens are present, never their values.
    """

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - a token type name, not a secret
    expires_at: float | None = None
    refresh_token: str | None = None
    id_token: str | None = None
    scope: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_response(cls, document: Mapping[str, Any], now: float | None = None) -> TokenSet:
        """Build from a successful token response; ``ProviderError`` when it is unusable."""
        access_token = document.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ProviderError("the token response has no access_token")
        expires_in = document.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires_at = (time.time() if now is None else now) + float(expires_in)
        return cls(
            access_token=access_token,
            token_type=str(document.get("token_type", "Bearer")),
            expires_at=expires_at,
            refresh_token=_optional_str(document, "refresh_token"),
            id_token=_optional_str(document, "id_token"),
            scope=_optional_str(document, "scope"),
            raw=dict(document),
        )

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds until the access token expires (negative once expired), if known."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def to_json(self) -> str:
        """The token response as the server sent it (this does contain the tokens)."""
        return json.dumps(dict(self.raw), indent=2)

    def __repr__(self) -> str:
        present = [n for n in ("access_token", "refresh_token", "id_token") if getattr(self, n)]
        return f"TokenSet({', '.join(present)}, expires_at={self.expires_at!r})"


def _optional_str(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class ClaimRules:
    """What a token's claims must satisfy beyond its signature."""

    issuer: str
    audience: str | None = None  # must be among ``aud`` when set
    leeway: int = 30  # seconds of clock skew tolerated on exp, nbf and iat
    nonce: str | None = None  # ID tokens: must equal the nonce sent in the request
    check_azp: bool = False  # ID tokens: azp rules of OIDC Core §3.1.3.7, sub and iat required


def id_token_rules(issuer: str, client_id: str, leeway: int, nonce: str | None) -> ClaimRules:
    """The rules of OpenID Connect Core §3.1.3.7 for an ID token issued to ``client_id``."""
    return ClaimRules(issuer, audience=client_id, leeway=leeway, nonce=nonce, check_azp=True)


def check_claims(claims: Mapping[str, Any], rules: ClaimRules, now: float | None = None) -> None:
    """Raise :class:`ValidationError` unless ``claims`` satisfy ``rules`` at ``now``."""
    current = time.time() if now is None else now
    if claims.get("iss") != rules.issuer:
        raise ValidationError("token issuer (iss) is not the configured issuer")
    exp = _number(claims, "exp", required=True)
    if exp is not None and current > exp + rules.leeway:
        raise ValidationError("token expired (exp)")
    nbf = _number(claims, "nbf")
    if nbf is not None and current + rules.leeway < nbf:
        raise ValidationError("token not yet valid (nbf)")
    iat = _number(claims, "iat", required=rules.check_azp)
    if rules.check_azp and not (isinstance(claims.get("sub"), str) and claims["sub"]):
        raise ValidationError("ID token has no sub claim")
    if iat is not None and iat > current + rules.leeway:
        raise ValidationError("token issued in the future (iat)")
    if rules.audience is not None:
        audiences = _audiences(claims)
        if rules.audience not in audiences:
            raise ValidationError("token audience (aud) does not include this client")
        # OIDC Core §3.1.3.7 #4-5: with several audiences azp must be present, and when
        # present it must name this client.
        azp_needed = len(audiences) > 1 or "azp" in claims
        if rules.check_azp and azp_needed and claims.get("azp") != rules.audience:
            raise ValidationError("token azp (authorized party) is not this client")
    if rules.nonce is not None and claims.get("nonce") != rules.nonce:
        raise ValidationError("ID token nonce does not match the login request")


def _number(claims: Mapping[str, Any], name: str, required: bool = False) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise ValidationError(f"token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"token claim {name} is not a number")
    return float(value)


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    return []


class FrozenDict(dict[str, Any]):
    """A dict that refuses changes: still a dict for ``json.dumps``, templates and isinstance."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("claims are read-only (shared by every request with this token)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __copy__(self) -> dict[str, Any]:
        return dict(self)


def freeze(value: Any) -> Any:
    """A read-only copy: dicts become :class:`FrozenDict`, lists tuples (recursively).

    Cached claims are handed to every request that presents the token; a caller that edits
    them must not change what the next request sees.
    """
    kind = type(value)  # exact types: JSON only makes dicts and lists (and this is hot)
    if kind is dict or kind is FrozenDict:
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if kind is list or kind is tuple:
        return tuple(freeze(v) for v in value)
    return value


class ValidatedTokenCache:
    """Claims of tokens that passed validation, until they expire; bounded, least recent out.

    A bearer token is usually sent many times; after the first full check each use costs one
    dictionary look-up. Entries are dropped at ``exp`` so an expired token is checked (and
    refused) again.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Mapping[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: float | None = None) -> Mapping[str, Any] | None:
        """The cached claims of ``token`` while it is unexpired, else ``None``."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if not math.isfinite(entry[0]):
            return None
        if (time.time() if now is None else now) >= entry[0]:
            with self._lock:
                self._entries.pop(token, None)
            return None
        return entry[1]

    def put(self, token: str, claims: Mapping[str, Any]) -> None:
        """Remember ``claims`` for ``token`` until its ``exp``."""
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or self.max_entries <= 0:
            return
        with self._lock:
            self._entries[token] = (float(exp), freeze(claims))
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class SignedToken:
    """A token whose header passed the algorithm check; its signature is still unchecked."""

    jws: CompactJws
    alg: str
    kid: str | None


def parse_signed(token: str, algorithms: Sequence[str]) -> SignedToken:
    """Split a JWS and check its header before any key is looked up.

    ``algorithms`` holds asymmetric algorithms only, so ``alg: none`` and HMAC tokens (such as
    one "signed" with the server's public key as an HS256 secret) are refused here.
    """
    try:
        jws = parse_compact(token)
    except ValueError as exc:
        raise ValidationError(f"malformed token: {exc}") from None
    alg = jws.header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise ValidationError(f"token algorithm {alg!r} is not accepted")
    if "crit" in jws.header:
        raise ValidationError("token has critical header parameters this adapter does not know")
    kid = jws.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValidationError("token kid is not a string")
    return SignedToken(jws, alg, kid)


def verified_claims(token: SignedToken, keys: Sequence[PublicKey]) -> dict[str, Any]:
    """The claims of ``token`` if one of ``keys`` (the server's, for its kid) signed it."""
    if not keys:
        raise ValidationError(f"token signed with an unknown key (kid {token.kid!r})")
    jws = token.jws
    if not any(verify_signature(token.alg, k, jws.signing_input, jws.signature) for k in keys):
        raise ValidationError("token signature is invalid")
    try:
        claims = strict_json(jws.payload)
    except (ValueError, RecursionError):
        claims = None
    if not isinstance(claims, dict):
        raise ValidationError("token payload is not a JSON object")
    return claims


ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")  # RFC 9068 §2.1
_NOT_ACCESS_TOKENS = ("id", "refresh", "offline", "logout")  # Keycloak's typ claim values


def check_access_token_type(token: SignedToken, claims: Mapping[str, Any]) -> None:
    """Refuse JWTs from the same issuer that are not access tokens (ID, refresh, logout).

    Accepted: an RFC 9068 header ``typ: at+jwt``, or Keycloak's claim ``typ: "Bearer"``, or a
    token with neither that carries no ``nonce`` (ID tokens do).
    """
    header_typ = token.jws.header.get("typ")
    if isinstance(header_typ, str) and header_typ.lower() in ACCESS_TOKEN_TYPES:
        return
    claim_typ = claims.get("typ")
    if isinstance(claim_typ, str) and claim_typ.lower() == "bearer":
        return
    if isinstance(header_typ, str) and header_typ.lower() not in ("jwt", "application/jwt"):
        raise ValidationError(f"token type {header_typ!r} is not an access token")
    if isinstance(claim_typ, str) and claim_typ.lower() in _NOT_ACCESS_TOKENS:
        raise ValidationError(f"token type {claim_typ!r} is not an access token")
    if "nonce" in claims:
        raise ValidationError("an ID token is not an access token")
