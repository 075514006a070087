"""A session as the browser carries it: cookie names, flags, sealing, splitting, ending.

One object per state knows how this app's session travels: the cookie names (``__Host-``
prefixed over https, so that a sibling subdomain or a plain-http page cannot plant one), the
``Secure`` flag (always on an https origin), the sealed value (bound to this app) split across
cookies when large, the server-side store when configured, and the record of ended sessions that
every copy of a cookie is checked against.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from adapter.config import AdapterConfig
from adapter.config._readers import is_loopback
from adapter.errors import StoreError
from adapter.stores import SessionOwner
from adapter.web._decisions import DecisionCache
from adapter.web._steps import (
    NeedShared,
    NeedStore,
    SharedRecords,
    Step,
    StoreOp,
    WebRequest,
)
from adapter.web.session import (
    WARN_CHUNKS,
    EndedSessions,
    SeenSessions,
    ServerLogouts,
    Session,
    SessionCodec,
    chunk_names,
    join_value,
    split_value,
)

log = logging.getLogger(__name__)
LOGIN_COOKIE = "oidc_login"
LOGOUT_COOKIE = "oidc_logout"  # the state of a logout on its way through the server
HOST_PREFIX = "__Host-"  # https at the site root: the browser pins the cookie to this origin


def app_scope(issuer: str, client_id: str) -> str:
    """This app's name in the records it shares (Redis keys and events): 16 hex digits of
    SHA-256 over the issuer and client id. The identity server's session ids, users and token
    ids are unique only within one issuer, so two apps (other issuer or other client) sharing a
    Redis, even under one ``redis-prefix``, never read each other's logouts. Fixed length and
    free of ``:``, unlike an issuer URL; the same for every process of one app."""
    return hashlib.sha256(f"{issuer}\0{client_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sharing:
    """How this process shares session news with the others (``redis-url`` configured)."""

    enabled: bool = False
    live: Callable[[], bool] = lambda: True  # hears every event now (else: remember nothing)
    seen: SeenSessions = field(default_factory=SeenSessions)
    generation: Callable[[], int] = lambda: 0  # changes when the subscription comes or goes


class SessionCookies:
    """Load, save, clear and end sessions; name and flag the cookies that carry them."""

    def __init__(
        self,
        config: AdapterConfig,
        codec: SessionCodec,
        ended: EndedSessions,
        decisions: DecisionCache[Any],
        logouts: ServerLogouts | None = None,
        sharing: Sharing | None = None,
    ) -> None:
        self.config = config
        self.web = config.web
        self.codec = codec
        self.server_side = self.web.session_store != "cookie"  # the cookie holds only an id
        self.ended = ended
        self.logouts = logouts if logouts is not None else ServerLogouts()
        self.decisions = decisions
        self.sharing = sharing if sharing is not None else Sharing()
        self.app = app_scope(config.issuer, config.client_id)
        # The Redis store's sessions are deleted with their end, in one transaction.
        self.in_redis = self.web.session_store == "redis" and self.sharing.enabled
        redirect_uri = self.web.redirect_uri
        # The origin's scheme when redirect-uri says it (behind a proxy), else per request.
        self.fixed_https = urlsplit(redirect_uri).scheme == "https" if redirect_uri else None
        self._names: dict[tuple[bool, str], tuple[str, str]] = {}
        self._root_names = {https: self._names_for(https, "")[0] for https in (False, True)}
        self._warned_large = False

    # -- names and flags ----------------------------------------------------------------------

    def origin(self, request: WebRequest) -> tuple[str, str]:
        """This app's public scheme and host: from ``redirect-uri`` when configured (behind a
        proxy the request's own Host may be an internal one), else from the request."""
        if self.web.redirect_uri:
            parts = urlsplit(self.web.redirect_uri)
            return parts.scheme, parts.netloc
        return request.scheme, request.host

    def https(self, request: WebRequest) -> bool:
        return self.fixed_https if self.fixed_https is not None else request.scheme == "https"

    def session_name(self, https: bool, root_path: str) -> str:
        """The session cookie's name for a request over ``https`` to an app mounted at
        ``root_path`` (the shells' fast path)."""
        if self.fixed_https is not None:
            https = self.fixed_https
        if not root_path:  # the common case, without building a key
            return self._root_names[https]
        return self._names_for(https, root_path)[0]

    def names(self, request: WebRequest) -> tuple[str, str]:
        """The session and login cookie names (see :meth:`_names_for`)."""
        return self._names_for(self.https(request), request.root_path)

    def _names_for(self, https: bool, root_path: str) -> tuple[str, str]:
        """``__Host-`` prefixed over https at the site root (the browser pins the cookie to
        this origin); ``__Secure-`` over https under a prefix (``__Host-`` needs ``Path=/``);
        and under a prefix the names carry it (``oidc_session_myapp``), so apps under
        ``/a/`` and ``/b/`` (or one at the root) never see each other's cookies."""
        names = self._names.get((https, root_path))
        if names is not None:
            return names
        if root_path:
            prefix, suffix = ("__Secure-" if https else ""), "_" + _slug(root_path)
        else:
            prefix, suffix = (HOST_PREFIX if https else ""), ""
        names = prefix + self.web.session_cookie + suffix, prefix + LOGIN_COOKIE + suffix
        if len(self._names) < 64:  # root paths are few; never grow on odd input
            self._names[(https, root_path)] = names
        return names

    def logout_name(self, request: WebRequest) -> str:
        """The cookie that binds a logout on its way through the server to this browser (its
        ``state``), named as the login cookie is (prefix, root path)."""
        return self.names(request)[1].replace(LOGIN_COOKIE, LOGOUT_COOKIE, 1)

    def chunk_names(self, request: WebRequest) -> list[str]:
        return chunk_names(self.names(request)[0])

    def secure(self, request: WebRequest) -> bool:
        """Secure cookies on an https origin, always; on http unless the host is loopback or
        ``ssl-required = "none"`` (which decides what the adapter accepts, not what it sends
        over https)."""
        if self.https(request):
            return True
        if self.config.ssl_required == "none":
            return False
        return not is_loopback(self.origin(request)[1].rsplit(":", 1)[0].strip("[]"))

    def dropped_over_http(self, request: WebRequest) -> bool:
        """Whether this request's cookies are ``Secure`` on a plain-http origin (not loopback):
        browsers drop them, so no login or session cookie ever comes back."""
        return not self.https(request) and self.secure(request)

    def cookie(self, request: WebRequest, name: str, value: str, max_age: int) -> str:
        """A ``Set-Cookie`` value, scoped to the app's root path."""
        secure = "; Secure" if self.secure(request) else ""
        path = _cookie_path(request.root_path)
        return f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"

    def expire(self, request: WebRequest, name: str) -> str:
        secure = "; Secure" if self.secure(request) else ""
        path = _cookie_path(request.root_path)
        return f"{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax{secure}"

    # -- sessions -----------------------------------------------------------------------------

    def load(
        self, request: WebRequest, shared: bool = True
    ) -> Generator[Step, Any, Session | None]:
        """The request's session: sealed by this app, not expired, not ended. ``shared=False``
        skips what the other processes recorded (a logout while Redis is down: a cookie
        session still ends here)."""
        value = join_value(request.cookies, self.names(request)[0])
        document = self._document(value) if value else None
        if document is None:
            return None
        if self.server_side:
            sid = document.get("sid")
            data = (yield NeedStore("load", sid)) if isinstance(sid, str) else None
        else:
            data = document.get("d")
        session = self._session(data)
        if session is None:
            return None
        if shared and self._unsettled(session):
            yield from self._read_shared(session)  # met here first: what do the others know?
        if self.ended.refuses(session.sid, session.created_at):
            return None
        if self.logouts.refuses(session.claims, session.created_at):
            yield from self.end(session)  # logged out at the server: every copy ends here too
            return None
        return session

    def opened(self, value: str | bytes) -> Session | None:
        """The session ``value`` carries when opening it is all :meth:`load` would do: a
        cookie session (not one in a store), that this process knows all the news of and that
        has not ended; else ``None`` (then :meth:`load` decides, with its steps). The entry's
        way in for a session cookie it has not seen (:meth:`WebCore.first_seen`)."""
        if self.server_side:
            return None
        document = self._document(value)
        session = self._session(document.get("d")) if document is not None else None
        if session is None or self._unsettled(session):
            return None
        if self.logouts.refuses(session.claims, session.created_at):
            return None  # :meth:`load` ends it everywhere
        return session

    def _document(self, value: str | bytes) -> dict[str, Any] | None:
        """The sealed document in a session cookie's value, while younger than the maximum
        session age."""
        document = self.codec.open(value, "session")
        stamp = document.get("t") if document is not None else None
        if not isinstance(stamp, int | float) or time.time() - stamp > self.web.session_max_age:
            return None  # (a stamp that is no number: never written here, refused all the same)
        return document

    def _session(self, data: object) -> Session | None:
        """The session a document (or the store) holds, unless it has ended here."""
        session = Session.from_dict(data) if isinstance(data, dict) else None
        if session is None or self.ended.refuses(session.sid, session.created_at):
            return None
        return session

    def _unsettled(self, session: Session) -> bool:
        """Whether the other processes may know news of ``session`` this one has not read:
        sharing is on, and the subscription was down or the session was never met here."""
        sharing = self.sharing
        return sharing.enabled and (not sharing.live() or session.sid not in sharing.seen)

    def _read_shared(self, session: Session) -> Generator[Step, Any, None]:
        """Read what the other processes recorded about ``session``; later news comes by
        subscription, so the session counts as seen only if the subscription was up all along
        (the same generation before and after the read)."""
        generation = self.sharing.generation()
        idp_sid, sub = session.claims.get("sid"), session.claims.get("sub")
        idp_sid = idp_sid if isinstance(idp_sid, str) else None
        sub = sub if isinstance(sub, str) else None
        records: SharedRecords = yield NeedShared(
            "check", sid=session.sid, at=session.created_at, idp_sid=idp_sid, sub=sub, app=self.app
        )
        until = session.created_at + self.web.session_max_age
        if records.ended:
            self.ended.end(session.sid, session.created_at, until)
        if records.logged_out_by_sid and idp_sid is not None:
            self.logouts.apply(idp_sid, None, session.created_at, until)
        if records.user_logged_out_at is not None and sub is not None:
            at = records.user_logged_out_at
            self.logouts.apply(None, sub, at, at + self.web.session_max_age)
        if self.sharing.live() and self.sharing.generation() == generation:
            self.sharing.seen.add(session.sid)

    def sealed(self, session: Session) -> str:
        """The session cookie's value for ``session`` (before it is split across cookies):
        the whole session, or with a server-side store its id; stamped with its creation."""
        stamp = int(session.created_at)
        if self.server_side:
            return self.codec.seal({"sid": session.sid, "t": stamp}, "session")
        return self.codec.seal({"d": session.to_dict(), "t": stamp}, "session")

    def save(
        self, request: WebRequest, session: Session, replace: bool = False
    ) -> Generator[Step, Any, list[str] | None]:
        """The cookies that carry ``session`` (and, server-side, the session saved). With
        ``replace`` the session must still exist: ``None`` when it ended while this request
        was refreshing it (a logout here, or the server-side session deleted)."""
        if replace and self.ended.refuses(session.sid, session.created_at):
            return None
        if self.server_side:
            ttl = session.created_at + self.web.session_max_age - time.time()
            op: StoreOp = "replace" if replace else "save"
            owner = None if replace else self._owner(session)
            stored = yield NeedStore(op, session.sid, session.to_dict(), ttl, owner)
            if replace and not stored:
                return None
        sealed = self.sealed(session)
        name = self.names(request)[0]
        parts = split_value(name, sealed)  # SessionTooLarge: answered 503 with the fix logged
        if len(parts) > WARN_CHUNKS and not self._warned_large:
            self._warned_large = True
            log.warning(
                "a session needs %d cookies (%d bytes): proxies and servers with 8-16 KB header "
                'limits may refuse its requests; set session-store = "memory" (server-side)',
                len(parts),
                len(sealed),
            )
        used = {n for n, _ in parts}
        cookies = [self.cookie(request, n, v, self.web.session_max_age) for n, v in parts]
        cookies += [
            self.expire(request, n)
            for n in self.chunk_names(request)
            if n not in used and n in request.cookies
        ]
        return cookies

    def clear(self, request: WebRequest) -> list[str]:
        """Expire every session cookie the request carries (at least the main one)."""
        names = [n for n in self.chunk_names(request) if n in request.cookies]
        return [self.expire(request, n) for n in names or [self.names(request)[0]]]

    def stale(self, request: WebRequest) -> list[str]:
        """Expire the session cookies of a request whose session did not open."""
        return [self.expire(request, n) for n in self.chunk_names(request) if n in request.cookies]

    def _owner(self, session: Session) -> SessionOwner:
        """Whom ``session`` belongs to at the identity server (the store indexes it so)."""
        idp_sid, sub = session.claims.get("sid"), session.claims.get("sub")
        return SessionOwner(
            self.app,
            idp_sid if isinstance(idp_sid, str) else None,
            sub if isinstance(sub, str) else None,
        )

    def end(self, session: Session) -> Generator[Step, Any, bool]:
        """End ``session`` for good: its record refuses every copy of the cookie until it
        would have expired, and nothing remembered about it is used again.

        It ends here first, whatever happens next. ``False`` when the shared store refused
        the write (down, read-only, out of memory): the other processes are not told yet (the
        registry writes the end again until Redis takes it), and the caller should say so."""
        expires = session.created_at + self.web.session_max_age
        self.ended.end(session.sid, session.created_at, expires)
        self.decisions.forget_session(session.sid)
        try:
            if self.server_side and not self.in_redis:
                yield NeedStore("delete", session.sid)
            if self.sharing.enabled:
                yield NeedShared(
                    "end",
                    sid=session.sid,
                    at=session.created_at,
                    until=expires,
                    app=self.app,
                    purge=self.in_redis,
                )
        except StoreError as exc:  # ended here and in the browser; the others are told later
            log.error(
                "a session ended here, but other processes could not be told yet (written again "
                "when the session store takes writes): %s",
                exc,
            )
            return False
        return True


SECURE_OVER_HTTP_FIX = (
    "serve the app over https (behind a proxy: write redirect-uri with https), or for a local "
    'test set-up only set ssl-required = "none"'
)


def secure_over_http(config: AdapterConfig) -> str | None:
    """What start-up can know of cookies a browser will drop: a plain-http ``redirect-uri`` on
    a host that is not loopback gets ``Secure`` cookies (unless ``ssl-required = "none"``),
    which browsers refuse over http. Without ``redirect-uri`` the origin is each request's,
    and the callback names the cause when the login cookie does not come back."""
    url = config.web.redirect_uri
    if config.ssl_required == "none" or not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or is_loopback(host):
        return None
    return (
        f"redirect-uri is plain http to {host}, which is not a loopback address: the login "
        "and session cookies are Secure, browsers drop them over http and every sign-in will "
        f'end in "This sign-in has expired"; {SECURE_OVER_HTTP_FIX}'
    )


def _slug(root_path: str) -> str:
    """A root path as cookie-name characters: ``/my-app/v2`` -> ``my_app_v2``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", root_path).strip("_")[:64] or "root"


def _cookie_path(root_path: str) -> str:
    """The cookie ``Path``: the app's root path (only characters a cookie attribute allows)."""
    if not root_path:
        return "/"
    return quote(root_path, safe="/:@!$&'()*+=-._~%")
