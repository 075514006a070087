"""Sessions: sealed cookies (AES-GCM), split across several cookies when large, and stores.

A cookie value is ``v1.<key id>.<nonce + ciphertext>`` in base64url. The purpose of the value
("session", "login") and the app it belongs to (client id and issuer) are bound in as
associated data, so one kind of cookie can never be replayed as another, and apps that share a
``session-secret`` never accept each other's sessions. Several keys may be configured: the
first seals, all open, so the session key itself can rotate without logging everybody out.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import secrets
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapter.jose import b64url, b64url_decode
from adapter.protocol.dpop import DPoPKey

COOKIE_CHUNK = 3800  # bytes of value per cookie: under the 4096 most browsers allow with attributes
MAX_CHUNKS = 8
WARN_CHUNKS = 3  # beyond this, proxies and servers with 8-16 KB header limits start refusing
MAX_DOCUMENT_BYTES = 256 * 1024
_VERSION = "v1"
_VERSION_BYTES = _VERSION.encode()


class SessionCodec:
    """Seal and open small JSON documents for cookies; ``context`` names the app (bound in)."""

    def __init__(self, keys: Sequence[bytes], context: str = "") -> None:
        if not keys:
            raise ValueError("at least one session key is needed")
        self._keys = [(hashlib.sha256(k).digest()[:6], AESGCM(_aes_key(k))) for k in keys]
        self._by_id = {key_id: aead for key_id, aead in self._keys}
        self._context = context

    def _associated(self, purpose: str) -> bytes:
        return f"{purpose}\0{self._context}".encode() if self._context else purpose.encode()

    def seal(self, document: Mapping[str, Any], purpose: str) -> str:
        """The sealed, compressed document; ``purpose`` must match when it is opened."""
        key_id, aead = self._keys[0]
        nonce = os.urandom(12)
        plain = zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 6)
        sealed = aead.encrypt(nonce, plain, self._associated(purpose))
        return f"{_VERSION}.{b64url(key_id)}.{b64url(nonce + sealed)}"

    def open(self, value: str | bytes, purpose: str) -> dict[str, Any] | None:
        """The document, or ``None`` for anything tampered, truncated, foreign or malformed;
        ``value`` as text, or as the bytes a server gave (not decoded on the way)."""
        try:
            data = value.encode("ascii") if isinstance(value, str) else value
            version, key_id, body = data.split(b".")
            if version != _VERSION_BYTES:
                return None
            aead = self._by_id.get(b64url_decode(key_id))
            raw = b64url_decode(body)
            if aead is None or len(raw) < 12 + 16:
                return None
            plain = aead.decrypt(raw[:12], raw[12:], self._associated(purpose))
            inflater = zlib.decompressobj()
            text = inflater.decompress(plain, MAX_DOCUMENT_BYTES)
            if inflater.unconsumed_tail:
                return None  # larger than any session this adapter writes
            document = json.loads(text)
        except (ValueError, InvalidTag, zlib.error, binascii.Error, UnicodeError):
            return None
        return document if isinstance(document, dict) else None


def _aes_key(secret: bytes) -> bytes:
    """A 256-bit AES key from a configured secret of any length (already random, so one hash)."""
    return hashlib.sha256(b"oidc-adapter session key\0" + secret).digest()


def split_value(name: str, value: str) -> list[tuple[str, str]]:
    """``value`` as cookies ``name``, ``name.1`` ...; the first says how many there are."""
    parts = [value[i : i + COOKIE_CHUNK] for i in range(0, len(value), COOKIE_CHUNK)] or [""]
    if len(parts) > MAX_CHUNKS:
        raise SessionTooLarge(len(parts))
    first = f"{len(parts)}~{parts[0]}" if len(parts) > 1 else parts[0]
    return [(name, first)] + [(f"{name}.{i}", part) for i, part in enumerate(parts[1:], 1)]


class SessionTooLarge(ValueError):
    """A session needs more cookies than a browser request can reasonably carry."""

    def __init__(self, cookies: int) -> None:
        self.cookies = cookies
        super().__init__(
            f"the session needs {cookies} cookies (at most {MAX_CHUNKS}); set "
            'session-store = "memory" (a server-side store) for tokens this large'
        )


def is_split(value: str | bytes) -> bool:
    """Whether a cookie's value is the first of several (:func:`split_value`'s ``N~``)."""
    return (b"~" in value[:3]) if isinstance(value, bytes) else ("~" in value[:3])


def join_value(cookies: Mapping[str, str], name: str) -> str | None:
    """The value split by :func:`split_value`, or ``None`` if a part is missing."""
    first = cookies.get(name)
    if first is None:
        return None
    count, sep, rest = first.partition("~")
    if not sep:
        return first
    if not count.isdigit() or not 1 < int(count) <= MAX_CHUNKS:
        return None
    parts = [rest]
    for index in range(1, int(count)):
        part = cookies.get(f"{name}.{index}")
        if part is None:
            return None
        parts.append(part)
    return "".join(parts)


def chunk_names(name: str) -> list[str]:
    """Every cookie name a split value may use (to expire them all)."""
    return [name] + [f"{name}.{i}" for i in range(1, MAX_CHUNKS)]


@dataclass
class Session:
    """A signed-in user's session: who it is and the tokens the app may use."""

    sid: str
    csrf: str
    claims: dict[str, Any]
    id_token: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None
    created_at: float = field(default_factory=time.time)
    scope: str | None = None  # what the access token grants (from the token or the response)
    dpop_key: dict[str, str] | None = None  # the key its tokens are bound to (DPoPKey.to_dict)

    @classmethod
    def new(cls, claims: dict[str, Any], **tokens: Any) -> Session:
        """A fresh session with new random id and CSRF token (never reuse one across logins)."""
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), claims, **tokens)

    @property
    def bound_key(self) -> DPoPKey | None:
        """The DPoP key its tokens are bound to; ``None`` without one (or a stored key that
        does not read back: its tokens then fail at the server, and the session ends)."""
        if self.dpop_key is None:
            return None
        try:
            return DPoPKey.from_dict(self.dpop_key)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "csrf": self.csrf,
            "claims": self.claims,
            "id": self.id_token,
            "at": self.access_token,
            "rt": self.refresh_token,
            "exp": self.expires_at,
            "iat": self.created_at,
            "sc": self.scope,
            **({"dk": self.dpop_key} if self.dpop_key is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session | None:
        """Rebuild from :meth:`to_dict`; ``None`` when any field has the wrong type."""
        sid, csrf, claims = data.get("sid"), data.get("csrf"), data.get("claims")
        created = data.get("iat")
        if not (isinstance(sid, str) and isinstance(csrf, str) and isinstance(claims, dict)):
            return None
        if not isinstance(created, int | float):
            return None
        id_token, access_token, refresh_token = data.get("id"), data.get("at"), data.get("rt")
        tokens = (id_token, access_token, refresh_token)
        if not all(token is None or isinstance(token, str) for token in tokens):
            return None
        expires = data.get("exp")
        if expires is not None and not isinstance(expires, int | float):
            return None
        scope = data.get("sc")
        scope = scope if isinstance(scope, str) else None
        key = data.get("dk")
        if key is not None and not (
            isinstance(key, dict) and all(isinstance(v, str) for v in key.values())
        ):
            return None
        return cls(
            sid, csrf, claims, id_token, access_token, refresh_token, expires, created, scope, key,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Session(sub={self.claims.get('sub')!r})"


class EndedSessions:
    """Session ids that ended (logout) while copies of their cookie may still be around.

    A cookie session lives in the browser: ending it at logout means refusing its id until the
    cookie would have expired anyway. Kept in this process; the Redis store shares it across
    processes. Bounded without ever forgetting an ended session early: when full, the oldest
    record gives way to a watermark that refuses every session created before it (failing
    closed: those users sign in again), so churning logouts cannot revive a stolen cookie.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._until: OrderedDict[str, tuple[float, float]] = (
            OrderedDict()
        )  # sid -> (created, until)
        self.watermark = 0.0  # sessions created at or before this are refused
        self._lock = threading.Lock()

    def end(self, sid: str, created_at: float, until: float) -> None:
        """Refuse ``sid`` until ``until`` (a Unix time: when its cookie expires anyway)."""
        now = time.time()
        with self._lock:
            self._until[sid] = (created_at, until)
            self._until.move_to_end(sid)
            while self._until and next(iter(self._until.values()))[1] <= now:
                self._until.popitem(last=False)
            while len(self._until) > self.max_entries:
                _, (created, _) = self._until.popitem(last=False)
                self.watermark = max(self.watermark, created)

    def refuses(self, sid: str, created_at: float) -> bool:
        """Whether the session ``sid`` created at ``created_at`` has ended."""
        if created_at <= self.watermark:
            return True
        entry = self._until.get(sid)
        return entry is not None and time.time() < entry[1]

    def __len__(self) -> int:
        return len(self._until)


class ServerLogouts:
    """Logouts the identity server announced on the back channel, and the logout tokens seen.

    A cookie session lives in the browser, so a logout at the server cannot delete it: it is
    refused when seen, by the server's session id (``sid`` claim) or, for a logout of a user
    (``sub``), for every session of that user created before the logout. Records last as long
    as a session could (``session-max-age``); ``jti`` values as long as a token could be
    replayed. Bounded without forgetting early: a record pushed out by newer ones leaves a
    watermark that refuses every session created before it (fail closed), as
    :class:`EndedSessions` does. The Redis registry shares them across processes.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._sids: OrderedDict[str, tuple[float, float]] = OrderedDict()  # sid -> (at, until)
        # Front-channel logouts (unauthenticated: anyone may name a made-up sid) in a table of
        # their own, a quarter of the size, whose oldest records drop out without a watermark:
        # a flood of them (from any number of processes) pushes out only its own kind, never
        # the signed logouts, and never signs everyone out.
        self._front: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._subs: OrderedDict[str, tuple[float, float]] = OrderedDict()  # sub -> (at, until)
        self._jtis: OrderedDict[str, float] = OrderedDict()  # jti -> until
        self.watermark = 0.0  # sessions created at or before this are refused
        self._lock = threading.Lock()

    def record(
        self,
        sid: str | None,
        sub: str | None,
        jti: str,
        until: float,
        jti_until: float,
        front: bool = False,
    ) -> bool:
        """Record a logout; ``False`` (nothing recorded) when its ``jti`` was seen before."""
        now = time.time()
        with self._lock:
            if self._jtis.get(jti, 0.0) > now:
                return False
            _put(self._jtis, jti, jti_until, now, self.max_entries)
        self.apply(sid, sub, now, until, front=front)
        return True

    def apply(
        self, sid: str | None, sub: str | None, at: float, until: float, front: bool = False
    ) -> None:
        """Record a logout at time ``at`` (another process's, or read from Redis); a later
        logout of the same session or user is never rolled back by an older one. ``front``:
        a front-channel logout (of ``sid`` only), kept apart (see ``__init__``)."""
        if front:
            if sid is not None:
                with self._lock:
                    old = self._front.get(sid)
                    self._front[sid] = (max(at, old[0]), max(until, old[1])) if old else (at, until)
                    self._front.move_to_end(sid)
                    while len(self._front) > self.max_entries // 4:
                        self._front.popitem(last=False)  # no watermark: best effort, fail open
            return
        with self._lock:
            for table, key in ((self._sids, sid), (self._subs, sub)):
                if key is None:
                    continue
                old = table.get(key)
                table[key] = (max(at, old[0]), max(until, old[1])) if old else (at, until)
                table.move_to_end(key)
                self._trim(table)

    def _trim(self, table: OrderedDict[str, tuple[float, float]]) -> None:
        now = time.time()
        while table and next(iter(table.values()))[1] <= now:
            table.popitem(last=False)
        while len(table) > self.max_entries:
            _, (at, _) = table.popitem(last=False)
            self.watermark = max(self.watermark, at)

    def refuses(self, claims: Mapping[str, Any], created_at: float) -> bool:
        """Whether a session with these claims (from its ID token) was logged out."""
        if not self._sids and not self._subs and not self.watermark and not self._front:
            return False  # the common case: no logout announced
        if created_at <= self.watermark:
            return True
        now = time.time()
        sid = claims.get("sid")
        for table in (self._sids, self._front):
            by_sid = table.get(sid) if isinstance(sid, str) else None
            if by_sid is not None and by_sid[1] > now:
                return True
        sub = claims.get("sub")
        entry = self._subs.get(sub) if isinstance(sub, str) else None
        return entry is not None and entry[1] > now and created_at <= entry[0]


def _put(table: OrderedDict[str, float], key: str, until: float, now: float, limit: int) -> None:
    table[key] = until
    table.move_to_end(key)
    while table and (len(table) > limit or next(iter(table.values())) <= now):
        table.popitem(last=False)


class SeenSessions:
    """Session ids whose shared records (in Redis) this process has read: a session is looked
    up there when first met, later news comes by subscription. Bounded, oldest out (an evicted
    id is simply read again)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, sid: str) -> None:
        with self._lock:
            self._ids[sid] = None
            while len(self._ids) > self.max_entries:
                self._ids.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()

    def __contains__(self, sid: object) -> bool:
        return sid in self._ids
