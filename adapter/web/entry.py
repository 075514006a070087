"""The shells' one door into ``web/``: a request's class, and the shortcuts' answers.

Both shells (:mod:`adapter.asgi`, :mod:`adapter.wsgi`) hand every HTTP request to
:meth:`Front.shortcut` first, with the few values any server gives cheaply (method, path, root
path, scheme) and a :class:`Wire`: a reader that knows their request format (a scope or an
environ) and answers the rest on demand. The entry decides, in one place for both:

- ``/k_jwks``: the key ring's prepared answer (200, HEAD, 304), nothing decoded;
- no credentials at all: anonymous on a public path, the 401 or the login redirect elsewhere;
- a bearer token or session cookie seen before: its remembered decision, where one may be
  reused (never on the adapter's own paths, for ``OPTIONS``, or under an ``[[access]]`` rule);
  there, a session cookie not seen yet is opened by the core's ``first_seen`` when that is
  all the full path would do (no store, no refresh due, no policy enforcer), and remembered;
- anything else: ``None``, and the shell builds a :class:`WebRequest` for :meth:`Front.handle`
  (the full path, :class:`~adapter.web.core.WebCore`).

A shell then only translates: the :data:`Outcome` back into ASGI messages or a WSGI answer.
It imports from ``web/`` this module (the answers' helpers it re-exports below) and the
step types, and shares the rest with the other shell (:mod:`adapter._shell`: the state's
entry, reloads, the steps' I/O); a test holds it to that.
"""

from __future__ import annotations

import enum
from typing import Protocol, TypeVar

from adapter.web._http import (
    LATIN1_SPACES,
    MAX_BODY_BYTES,
    MAX_FORM_BYTES,
    body_too_large,
    cookie_span,
    failure_response,
    parse_cookie_header,
    parse_form,
    preflight_header,
    private_headers,
    private_raw_headers,
    split_root,
)
from adapter.web._steps import Outcome, Proceed, drive, drive_async
from adapter.web.core import WebCore

__all__ = [  # what the shells take from web/ besides the step types
    "ANONYMOUS",
    "MAX_BODY_BYTES",
    "MAX_FORM_BYTES",
    "Front",
    "Wire",
    "body_too_large",
    "drive",
    "drive_async",
    "failure_response",
    "parse_cookie_header",
    "parse_form",
    "preflight_header",
    "private_headers",
    "private_raw_headers",
    "split_root",
]

R_contra = TypeVar("R_contra", contravariant=True)
Credentials = tuple[str | bytes | None, str | None] | None  # as Wire.credentials gives them


class Unread(enum.Enum):
    """Credentials not read yet; read ones are passed on (a tenant chosen by a bearer token's
    issuer had its headers read once already)."""

    UNREAD = 0


UNREAD = Unread.UNREAD
ANONYMOUS = Proceed(None)  # the outcome for requests that carry no credentials at all


class Wire(Protocol[R_contra]):
    """How the entry reads one server format's request (an ASGI scope, a WSGI environ).

    A shell implements it once, statelessly (one object for every request: nothing is
    allocated per request); it reports what the request holds and decides nothing.
    """

    def credentials(self, request: R_contra) -> Credentials:
        """The ``Cookie`` header (text, or the bytes a server gave) and the ``Authorization``
        header; ``None`` when either came more than once."""
        ...

    def header(self, request: R_contra, name: str) -> str | bytes | None:
        """One header (``name`` lower case), as the server holds it."""
        ...

    def raw_path(self, request: R_contra, path: str, root_path: str) -> str:
        """The path as sent (percent-encoded), relative to the app's root."""
        ...

    def query(self, request: R_contra) -> str:
        """The query string as sent, without ``?``."""
        ...


class Front:
    """The entry for one state: built once per configuration and key ring, with its core."""

    def __init__(self, core: WebCore) -> None:
        self.core = core
        self.handle = core.handle  # the full path
        self.wants_form = core.wants_form
        self.wants_body = core.wants_body  # the policy enforcer's claims read the body
        self.jwks_path = core.jwks_path
        self._jwks = core.jwks
        self._refusals = core.refusals
        self._decisions = core.decisions
        self._own_paths = core.own_paths
        self._anonymous_through = not core.config.bearer_only
        self._cookie_names: dict[tuple[bool, str], bytes] = {}
        self._root_cookie_names = {
            https: core.cookies.session_name(https, "").encode("latin-1") for https in (False, True)
        }

    def shortcut(
        self,
        wire: Wire[R_contra],
        request: R_contra,
        method: str,
        path: str,
        root_path: str,
        https: bool,
        read: Credentials | Unread = UNREAD,
    ) -> Outcome | None:
        """The outcome decided without a request object, or ``None`` (the full path decides).

        ``method`` is upper case; ``path`` is relative to the app's root, as text; ``read``:
        the credentials when they were read already. Measured hot paths: nothing parsed
        twice, nothing decoded that a comparison of bytes can settle.
        """
        if path == self.jwks_path:
            return self._jwks.answer(method, wire.header(request, "if-none-match"))
        credentials = wire.credentials(request) if read is UNREAD else read
        if credentials is None:
            return None  # a header sent twice: the full path joins (Cookie) or refuses them
        cookie, authorization = credentials
        if authorization is None and not cookie:
            return self._anonymous(wire, request, method, path, root_path)
        return self.remembered(method, path, authorization, cookie, https, root_path)

    def _anonymous(
        self, wire: Wire[R_contra], request: R_contra, method: str, path: str, root_path: str
    ) -> Outcome | None:
        """A request with neither credential: through on a public path, refused elsewhere
        (as :meth:`WebCore.handle` decides it); the adapter's own paths and ``OPTIONS`` (a
        preflight is answered by the app's CORS alone) take the full path."""
        if not self._anonymous_through or method == "OPTIONS" or path in self._own_paths:
            return None
        if self.core.is_public(path, method):
            return ANONYMOUS
        accept = wire.header(request, "accept")
        return self._refusals.answer(
            method,
            wire.raw_path(request, path, root_path),
            wire.query(request),
            root_path,
            _text(accept) or "",
            _text(wire.header(request, "sec-fetch-mode")),
            _text(wire.header(request, "x-requested-with")),
        )

    def remembered(
        self,
        method: str,
        path: str,
        authorization: str | None,
        cookie: str | bytes | None,
        https: bool,
        root_path: str = "",
    ) -> Proceed | None:
        """The decision remembered for this request, or ``None``: a bearer token seen before
        when ``Authorization`` is present (cookies play no part then), else a session cookie
        seen before, or one not seen yet that the core decides from the cookie alone
        (:meth:`cached_session`); never where :meth:`WebCore.may_reuse` refuses."""
        core = self.core
        if not core.may_reuse(path, method):
            return None
        if authorization is not None:
            outcome = core.cached_bearer(authorization)
        else:
            outcome = self.cached_session(cookie, https, root_path) if cookie else None
        enforcer = core.enforcer
        if outcome is None or enforcer is None or core.is_public(path, method):
            return outcome
        return enforcer.remembered(outcome, path, method)  # its verdict known, else None

    def cached_session(
        self, cookie_header: str | bytes, https: bool, root_path: str = ""
    ) -> Proceed | None:
        """The outcome of an earlier request with this session cookie, while it holds; for a
        cookie not seen yet, the core's :meth:`~WebCore.first_seen` (which opens and
        remembers it when that is all the full path would do).

        A session request is decided once (decrypt, decompress, parse, build the identity) and
        then remembered by its session cookie's value until its token needs a refresh, the
        session ends, or a minute passes. ``https`` and ``root_path`` (where the app is
        mounted) pick the cookie's name. ``cookie_header`` is the header as text, or as the
        bytes an ASGI server gives (compared as they are: no decoding on the hot path).
        """
        raw = cookie_header if isinstance(cookie_header, bytes) else _latin1(cookie_header)
        if raw is None:
            return None
        name = self._cookie_name(https, root_path)
        begin = len(name) + 1
        if (
            raw.startswith(name)
            and raw.startswith(b"=", len(name))
            and len(raw) > begin + 1
            and raw[begin] not in _STRIPPED
            and raw[-1] not in _STRIPPED
        ):
            # The usual header: the session cookie alone, compared whole where it lies (a
            # remembered value holds no ";", so a longer header never matches here).
            remembered = self._decisions.get_in(raw, begin, len(raw))
            if remembered is not None:
                return remembered
        return self._session_in(raw, name)

    def _session_in(self, raw: bytes, name: bytes) -> Proceed | None:
        """The outcome for the session cookie found where the parser finds it: remembered, or
        first seen (a value with spaces or quotes at an edge: remembered only)."""
        span = cookie_span(raw, name)
        if span is None:
            return None
        begin, end = span
        if end - begin < 2 or raw[begin] in _STRIPPED or raw[end - 1] in _STRIPPED:
            # Spaces or quotes at an edge: the value as the parser reads it (from text).
            value = raw[begin:end].decode("latin-1").strip().strip('"')
            return self._decisions.get(value) if value else None
        remembered = self._decisions.get_in(raw, begin, end)  # compared in place
        if remembered is not None:
            return remembered
        return self.core.first_seen(raw[begin:end])  # unseen: opened here, if that is all

    def _cookie_name(self, https: bool, root_path: str) -> bytes:
        if not root_path:  # the usual case, without building a key
            return self._root_cookie_names[https]
        key = (https, root_path)
        name = self._cookie_names.get(key)
        if name is None:
            name = self.core.cookies.session_name(https, root_path).encode("latin-1")
            if len(self._cookie_names) < 64:  # root paths come from the server, not the client
                self._cookie_names[key] = name
        return name


# What the cookie parser strips from a value's edges (str.strip() on Latin-1 text, and quotes).
_STRIPPED = frozenset(LATIN1_SPACES + b'"')


def _latin1(text: str) -> bytes | None:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None  # not a header a server could have sent: the full path decides


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value
