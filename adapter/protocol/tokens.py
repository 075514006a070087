"""Tokens: the :class:`TokenSet` a token endpoint returns, and what makes a JWT acceptable.

Signature checks live in :mod:`adapter.jose`; keys come from
:mod:`adapter.protocol.provider`. This module holds the claim rules (OpenID Connect Core §3.1.3.7
for ID tokens, RFC 9068 for JWT access tokens), the cache that lets a token seen again cost one
dictionary look-up, and the token checks themselves as generators that yield :class:`NeedKeys`
and receive the server's keys: the web core drives them with its steps, the clients with
:func:`run_check` and :func:`run_check_async`, as httpx drives one ``auth_flow`` from both sides.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from adapter.errors import ProviderError, ValidationError, bounded_text
from adapter.jose import (
    ASYMMETRIC_ALGORITHMS,
    MAX_TOKEN_LENGTH,
    CompactJws,
    PublicKey,
    parse_compact,
    strict_json,
    verify_signature,
)

T = TypeVar("T")


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
    audience: str | tuple[str, ...] | None = None  # one of them must be among ``aud`` when set
    leeway: int = 30  # seconds of clock skew tolerated on exp, nbf and iat
    nonce: str | None = None  # ID tokens: must equal the nonce sent in the request
    check_azp: bool = False  # ID tokens: azp rules of OIDC Core §3.1.3.7, sub and iat required
    exp_required: bool = True  # logout tokens may omit exp (Back-Channel Logout 1.0 §2.4)


def id_token_rules(issuer: str, client_id: str, leeway: int, nonce: str | None) -> ClaimRules:
    """The rules of OpenID Connect Core §3.1.3.7 for an ID token issued to ``client_id``."""
    return ClaimRules(issuer, audience=client_id, leeway=leeway, nonce=nonce, check_azp=True)


def check_claims(claims: Mapping[str, Any], rules: ClaimRules, now: float | None = None) -> None:
    """Raise :class:`ValidationError` unless ``claims`` satisfy ``rules`` at ``now``.

    One check per claim, in a fixed order: a token with several faults is always refused for
    the first of them. (Written out rather than looped over: this runs for every token.)
    """
    current = time.time() if now is None else now
    _check_iss(claims, rules)
    _check_exp(claims, rules, current)
    _check_nbf(claims, rules, current)
    _check_iat_is_number(claims, rules)
    _check_sub(claims, rules)  # between the two iat checks: which fault is reported first
    _check_iat_not_in_future(claims, rules, current)
    _check_aud(claims, rules)
    _check_azp(claims, rules)
    _check_nonce(claims, rules)


def _check_iss(claims: Mapping[str, Any], rules: ClaimRules) -> None:
    if claims.get("iss") != rules.issuer:
        raise ValidationError("token issuer (iss) is not the configured issuer")


def _check_exp(claims: Mapping[str, Any], rules: ClaimRules, current: float) -> None:
    exp = _number(claims, "exp", rules.exp_required)
    if exp is not None and current > exp + rules.leeway:
        raise ValidationError("token expired (exp)")


def _check_nbf(claims: Mapping[str, Any], rules: ClaimRules, current: float) -> None:
    nbf = _number(claims, "nbf")
    if nbf is not None and current + rules.leeway < nbf:
        raise ValidationError("token not yet valid (nbf)")


def _check_iat_is_number(claims: Mapping[str, Any], rules: ClaimRules) -> None:
    """A number when present; ID tokens must have one."""
    _number(claims, "iat", rules.check_azp)


def _check_sub(claims: Mapping[str, Any], rules: ClaimRules) -> None:
    if rules.check_azp and not (isinstance(claims.get("sub"), str) and claims["sub"]):
        raise ValidationError("ID token has no sub claim")


def _check_iat_not_in_future(claims: Mapping[str, Any], rules: ClaimRules, current: float) -> None:
    iat = claims.get("iat")  # absent or a finite number: _check_iat_is_number ran first
    if iat is not None and iat > current + rules.leeway:
        raise ValidationError("token issued in the future (iat)")


def _check_aud(claims: Mapping[str, Any], rules: ClaimRules) -> None:
    if rules.audience is None:
        return
    audiences = _audiences(claims)
    wanted = (rules.audience,) if isinstance(rules.audience, str) else rules.audience
    for accepted in wanted:  # a loop, not any(): this runs for every cached bearer token
        if accepted in audiences:
            return
    raise AudienceMismatch(tuple(audiences), wanted)


def _check_azp(claims: Mapping[str, Any], rules: ClaimRules) -> None:
    """ID tokens, OIDC Core §3.1.3.7 #4-5: with several audiences azp must be present, and when
    present it must name this client."""
    if not rules.check_azp or rules.audience is None:
        return
    aud = claims.get("aud")  # a string, or strings: _check_aud accepted it
    several = isinstance(aud, _ARRAY) and len(aud) > 1
    if (several or "azp" in claims) and claims.get("azp") != rules.audience:
        raise ValidationError("token azp (authorized party) is not this client")


def _check_nonce(claims: Mapping[str, Any], rules: ClaimRules) -> None:
    if rules.nonce is not None and claims.get("nonce") != rules.nonce:
        raise ValidationError("ID token nonce does not match the login request")


class AudienceMismatch(ValidationError):
    """The token is for someone else: ``found`` is its ``aud``, ``expected`` what we accept."""

    def __init__(self, found: tuple[str, ...], expected: tuple[str, ...]) -> None:
        self.found = tuple(a[:100] for a in found[:5])  # server text, bounded for logs
        self.expected = expected
        super().__init__("token audience (aud) does not include this client")


class AlgorithmRefused(ValidationError):
    """The token's header names an algorithm not accepted for it: ``found`` says which."""

    def __init__(self, found: object) -> None:
        self.found = _shown(found)
        super().__init__(f"token algorithm {self.found} is not accepted")


def _shown(value: object) -> str:
    """A value from a token (the sender chose it) for a message: quoted, one line, bounded."""
    return repr(bounded_text(value, 40)) if isinstance(value, str) else type(value).__name__


# Built once: ``isinstance(v, int | float)`` in a function builds the union on every call, and
# these run for every token checked.
_NUMBER = (int, float)
_ARRAY = (list, tuple)  # a list as parsed, or a tuple once frozen by the validated-token cache


def _number(claims: Mapping[str, Any], name: str, required: bool = False) -> float | None:
    value = claims.get(name)
    if type(value) is int:  # the usual NumericDate, and never bool, NaN or infinite
        return float(value)
    if value is None:
        if required:
            raise ValidationError(f"token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        raise ValidationError(f"token claim {name} is not a number")
    return float(value)


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if not isinstance(aud, _ARRAY):
        return []
    for member in aud:  # a loop, not all() over a generator: this runs for every bearer token
        if not isinstance(member, str):
            return []
    return list(aud)


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


MAX_CACHE_BYTES = 16 * 1024 * 1024  # validated bearer tokens, estimated (token + claims)


class ValidatedTokenCache:
    """Claims of tokens that passed validation, until they expire; bounded, least recent out.

    A bearer token is usually sent many times; after the first full check each use costs one
    dictionary look-up. Entries are dropped at ``exp`` so an expired token is checked (and
    refused) again. The cache is bounded in entries and in bytes (a stream of large, distinct
    tokens cannot grow it past its budget), and drops expired entries as it inserts.
    """

    def __init__(self, max_entries: int = 10_000, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, Mapping[str, Any], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, token: str, now: float | None = None) -> Mapping[str, Any] | None:
        """The cached claims of ``token`` while it is unexpired, else ``None``."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if (time.time() if now is None else now) >= entry[0]:
            with self._lock:
                if self._entries.get(token) is entry:
                    self._pop(token)
            return None
        return entry[1]

    def checked(self, token: str, rules: ClaimRules) -> Mapping[str, Any] | None:
        """The cached claims of ``token`` checked against ``rules`` (cheap, and the rules may
        differ between callers: :class:`ValidationError` if they fail), else ``None``."""
        claims = self.get(token)
        if claims is not None:
            check_claims(claims, rules)
        return claims

    def put(self, token: str, claims: Mapping[str, Any], size: int | None = None) -> None:
        """Remember ``claims`` for ``token`` until its ``exp``. ``size``: the claims' size
        when ``token`` is not a JWT holding them (a digest as the key, say); else estimated
        from the token's own length."""
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or not math.isfinite(exp) or self.max_entries <= 0:
            return
        # The key, the claims (about the token's payload, or as given) and slots.
        cost = len(token) + (len(token) if size is None else size) + 400
        if cost > self.max_bytes // 16:
            return
        frozen = freeze(claims)
        now = time.time()
        with self._lock:
            if token in self._entries:
                self._pop(token)
            if self._entries and next(iter(self._entries.values()))[0] <= now:
                for old in list(itertools.islice(self._entries, 8)):  # expired, amortised
                    if self._entries[old][0] <= now:
                        self._pop(old)
            while self._entries and (
                len(self._entries) >= self.max_entries or self._bytes + cost > self.max_bytes
            ):
                self._pop(next(iter(self._entries)))
            self._entries[token] = (float(exp), frozen, cost)
            self._bytes += cost

    def _pop(self, token: str) -> None:
        self._bytes -= self._entries.pop(token)[2]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The estimated bytes held."""
        return self._bytes


class RefusedTokens:
    """Digests of tokens the server refused moments ago (introspection), bounded.

    Junk tokens then cost a look-up, not an authenticated call to the server each; the window
    is short so that a token that becomes valid (clock skew, replication) is soon accepted.
    """

    def __init__(self, seconds: float = 10.0, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._until[key] = now + self.seconds
            self._until.move_to_end(key)
            while self._until and (
                len(self._until) > self.max_entries or next(iter(self._until.values())) <= now
            ):
                self._until.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        until = self._until.get(key) if isinstance(key, str) else None
        return until is not None and time.monotonic() < until

    def __len__(self) -> int:
        return len(self._until)


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# logout+jwt as the spec says; plain JWT as Keycloak sent them until 2024 (keycloak#29260): the
# events claim and the no-nonce rule keep other tokens out either way (spec §4.1).
LOGOUT_TOKEN_TYPES = ("logout+jwt", "application/logout+jwt", "jwt", "application/jwt")
LOGOUT_TOKEN_MAX_AGE = 300  # seconds: an older logout token is a replay, not news


@dataclass(frozen=True)
class LogoutRequest:
    """Whom a valid logout token logs out: the server's session ``sid`` and/or user ``sub``."""

    sid: str | None
    sub: str | None
    jti: str
    issued_at: float


def check_logout_token(
    token: SignedToken,
    claims: Mapping[str, Any],
    issuer: str,
    client_id: str,
    leeway: int,
    now: float | None = None,
) -> LogoutRequest:
    """The rules of OpenID Connect Back-Channel Logout 1.0 §2.6 for a verified logout token:
    issuer, audience and times as for an ID token, ``typ`` ``logout+jwt`` when present, the
    back-channel ``events`` member, ``sid`` and/or ``sub``, a ``jti``, no ``nonce``, and an
    ``iat`` no older than a few minutes. Whether its ``jti`` was seen before is the caller's
    to check (it needs a memory shared by every process)."""
    current = time.time() if now is None else now
    _check_logout_typ(token.jws.header.get("typ"))
    rules = ClaimRules(issuer, audience=client_id, leeway=leeway)  # exp required (1.0 final)
    check_claims(claims, rules, current)
    issued_at = _logout_iat(claims, leeway, current)
    _check_logout_event(claims)
    if "nonce" in claims:
        raise ValidationError("a logout token must not carry a nonce")
    sid, sub = _optional_str(claims, "sid"), _optional_str(claims, "sub")
    if sid is None and sub is None:
        raise ValidationError("logout token names neither sid nor sub")
    jti = _optional_str(claims, "jti")
    if jti is None:
        raise ValidationError("logout token has no jti")
    return LogoutRequest(sid, sub, jti, issued_at)


def _check_logout_typ(typ: object) -> None:
    """``logout+jwt`` (or one of :data:`LOGOUT_TOKEN_TYPES`) when the header names a type."""
    if typ is not None and str(typ).lower() not in LOGOUT_TOKEN_TYPES:
        raise ValidationError(f"logout token type {_shown(typ)} is not logout+jwt")


def _logout_iat(claims: Mapping[str, Any], leeway: int, current: float) -> float:
    """The required ``iat``, refused when older than :data:`LOGOUT_TOKEN_MAX_AGE`: a replay."""
    iat = _number(claims, "iat", True)
    if iat is not None and iat < current - LOGOUT_TOKEN_MAX_AGE - leeway:
        raise ValidationError("logout token too old (iat)")
    return float(iat or current)


def _check_logout_event(claims: Mapping[str, Any]) -> None:
    """The ``events`` claim holds the back-channel logout event, itself a JSON object."""
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise ValidationError("logout token has no back-channel logout event")


@dataclass(frozen=True)
class SignedToken:
    """A token whose header passed the algorithm check; its signature is still unchecked."""

    jws: CompactJws
    alg: str
    kid: str | None


def parse_signed(
    token: str, algorithms: Sequence[str], max_length: int = MAX_TOKEN_LENGTH
) -> SignedToken:
    """Split a JWS and check its header before any key is looked up.

    ``algorithms`` holds asymmetric algorithms only, so ``alg: none`` and HMAC tokens (such as
    one "signed" with the server's public key as an HS256 secret) are refused here.
    """
    try:
        jws = parse_compact(token, max_length)
    except ValueError as exc:
        raise ValidationError(f"malformed token: {exc}") from None
    alg = jws.header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise AlgorithmRefused(alg)
    if "crit" in jws.header:
        raise ValidationError("token has critical header parameters this adapter does not know")
    kid = jws.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValidationError("token kid is not a string")
    return SignedToken(jws, alg, kid)


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A JWS's claims, unchecked (``None`` when it is no JWS with a JSON object): only to
    choose what checks it, or to see what a server sent this client, never trusted."""
    try:
        payload = strict_json(parse_compact(token).payload)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` a JWS says, unchecked: only to choose which tenant's keys and rules check
    it (an app with several realms), never trusted for anything else; ``None`` when the token
    is not a JWS or says no issuer."""
    claims = unverified_claims(token)
    issuer = claims.get("iss") if claims is not None else None
    return issuer if isinstance(issuer, str) else None


def bound_certificate(claims: Mapping[str, Any]) -> str | None:
    """The SHA-256 thumbprint of the client certificate a token is bound to
    (``cnf.x5t#S256``, RFC 8705 §3.1), or ``None``."""
    cnf = claims.get("cnf")
    thumbprint = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    return thumbprint if isinstance(thumbprint, str) else None


def verified_claims(token: SignedToken, keys: Sequence[PublicKey]) -> dict[str, Any]:
    """The claims of ``token`` if one of ``keys`` (the server's, for its kid) signed it."""
    if not keys:
        raise ValidationError(f"token signed with an unknown key (kid {_shown(token.kid)})")
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
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")  # only ID tokens carry these
_GRANT_CLAIMS = ("scope", "scp", "client_id")  # what access tokens carry and ID tokens do not


def check_access_token_type(token: SignedToken, claims: Mapping[str, Any]) -> None:
    """Refuse JWTs from the same issuer that are not access tokens (ID, refresh, logout).

    Accepted: an RFC 9068 header ``typ: at+jwt``, or Keycloak's claim ``typ: "Bearer"``, or a
    plain JWT that carries what access tokens carry (``scope``, ``scp`` or ``client_id``) and
    nothing only ID tokens carry. An ID token (audience: this client) is refused even without a
    ``nonce``: it proves a login happened, not that the bearer may call this API.
    """
    header_typ = token.jws.header.get("typ")
    if isinstance(header_typ, str) and header_typ.lower() in ACCESS_TOKEN_TYPES:
        return
    claim_typ = claims.get("typ")
    if isinstance(claim_typ, str) and claim_typ.lower() == "bearer":
        return
    if isinstance(header_typ, str) and header_typ.lower() not in ("jwt", "application/jwt"):
        raise ValidationError(f"token type {_shown(header_typ)} is not an access token")
    if isinstance(claim_typ, str) and claim_typ.lower() in _NOT_ACCESS_TOKENS:
        raise ValidationError(f"token type {_shown(claim_typ)} is not an access token")
    if any(name in claims for name in _ID_TOKEN_CLAIMS):
        raise ValidationError("an ID token is not an access token")
    if not any(name in claims for name in _GRANT_CLAIMS):
        raise ValidationError(
            "not an access token, as far as can be told (no typ at+jwt, and no scope, scp or "
            "client_id claim)"
        )


@dataclass(frozen=True)
class NeedKeys:
    """Yield to get the server's keys for ``kid`` and ``alg`` (refetched once if unknown)."""

    kid: str | None
    alg: str


Checking = Generator[NeedKeys, Sequence[PublicKey], T]  # a token check, sans-IO


def verify_jwt(
    token: str,
    algorithms: Sequence[str],
    max_length: int = MAX_TOKEN_LENGTH,
    *,
    access_token: bool = False,
) -> Checking[dict[str, Any]]:
    """The claims of a JWS signed by the server (with ``access_token``, checked to be one)."""
    signed = parse_signed(token, algorithms, max_length)
    keys = yield NeedKeys(signed.kid, signed.alg)
    claims = verified_claims(signed, keys)
    if access_token:
        check_access_token_type(signed, claims)
    return claims


def access_token_claims(
    token: str, rules: ClaimRules, cache: ValidatedTokenCache
) -> Checking[Mapping[str, Any]]:
    """The claims of a JWT access token (RFC 9068) that satisfy ``rules``: from ``cache`` when
    seen before, else verified with an asymmetric algorithm and remembered until it expires.
    A wrong audience raises :class:`AudienceMismatch`, anything else :class:`ValidationError`."""
    cached = cache.checked(token, rules)
    if cached is not None:
        return cached
    claims = yield from verify_jwt(token, ASYMMETRIC_ALGORITHMS, access_token=True)
    check_claims(claims, rules)
    cache.put(token, claims)
    return claims


def run_check(check: Checking[T], keys: Callable[[NeedKeys], Sequence[PublicKey]]) -> T:
    """Drive a token check to its result, answering each :class:`NeedKeys` with ``keys``."""
    try:
        need = next(check)
        while True:
            need = check.send(keys(need))
    except StopIteration as done:
        result: T = done.value
        return result


async def run_check_async(
    check: Checking[T], keys: Callable[[NeedKeys], Awaitable[Sequence[PublicKey]]]
) -> T:
    """:func:`run_check` with an asynchronous ``keys``."""
    try:
        need = next(check)
        while True:
            need = check.send(await keys(need))
    except StopIteration as done:
        result: T = done.value
        return result


INTROSPECTED_ACCESS_TYPES = (
    "bearer",
    "dpop",  # RFC 9449 §6.2: a DPoP-bound token (its cnf is then checked as for a JWT)
    "access_token",
    "urn:ietf:params:oauth:token-type:access_token",
)


def check_introspected(claims: Mapping[str, Any], audiences: Sequence[str]) -> None:
    """An active introspection answer must be about an access token (RFC 7662).

    Servers answer ``active: true`` for refresh tokens too (oidc-provider: without
    ``token_type``, with the ``client_id`` they were issued to). Refused: a ``token_type`` that
    is not an access-token type; Keycloak's ``typ`` of a refresh or ID token; and an answer with
    neither, unless its ``aud`` names one of ``audiences`` (this client, or token-audiences):
    ``client_id`` alone proves nothing, as refresh tokens carry it too.
    """
    token_type = claims.get("token_type")
    claim_typ = claims.get("typ")
    if token_type is not None:
        if not isinstance(token_type, str) or token_type.lower() not in INTROSPECTED_ACCESS_TYPES:
            raise ValidationError(
                f"introspected token_type {_shown(token_type)} is not an access token"
            )
    elif isinstance(claim_typ, str):
        if claim_typ.lower() != "bearer":
            raise ValidationError(
                f"introspected token type {_shown(claim_typ)} is not an access token"
            )
    elif not any(a in _audiences(claims) for a in audiences):
        raise ValidationError(
            "the introspection answer has no token_type and its aud does not name this client: "
            "not an access token for us (a refresh token?)"
        )
