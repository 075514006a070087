"""Small pure HTTP pieces of the core: parsing what a request carries, building answers.

No decision is made here; these are the helpers every route shares (the request-line and
cookie parsing that must never fail on hostile input, and the plain-text, redirect and failure
answers with their safe default headers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Sequence
from typing import AnyStr
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

from adapter.errors import AdapterError, ProviderError, StoreError
from adapter.web._steps import Respond, WebRequest
from adapter.web.session import SessionTooLarge

log = logging.getLogger(__name__)

MAX_RETURN_PATH = 2048  # a return URL after login: longer ones are not worth a redirect
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class BadRequest(Exception):
    """The request itself is malformed: answered 400 with a short reason, logged at debug."""


def is_preflight(request: WebRequest) -> bool:
    """A real CORS preflight: ``OPTIONS`` with both ``Origin`` and the method it asks about.
    Any other ``OPTIONS`` is a request like any other (a catch-all app may serve content)."""
    headers = request.headers
    return (
        request.method == "OPTIONS"  # upper case: WebRequest normalises it
        and "origin" in headers
        and "access-control-request-method" in headers
    )


def same_text(given: str, expected: str) -> bool:
    """Constant-time comparison of any text (``compare_digest`` refuses non-ASCII str)."""
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def digest(token: str) -> str:
    """A short fixed-size key for a token: caches and flights never hold a token's bytes."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:32]


def cookie_span(header: AnyStr, name: AnyStr) -> tuple[int, int] | None:
    """Where :func:`parse_cookie_header` finds cookie ``name``'s value in ``header`` (text, or
    the header's Latin-1 bytes), without parsing the other cookies: its start and end, before
    spaces and quotes are stripped, so that a caller can compare it in place. A name counts
    only at the start of a ``;``-separated pair, never inside another cookie's value
    (``a=x __Host-s=y`` is one cookie named ``a``)."""
    equals, semicolon = ("=", ";") if isinstance(header, str) else (b"=", b";")
    marker = name + equals
    start = 0
    while True:
        index = header.find(marker, start)
        if index < 0:
            return None
        before = header[header.rfind(semicolon, 0, index) + 1 : index]
        if not (before.strip() if isinstance(before, str) else before.strip(LATIN1_SPACES)):
            break  # only spaces between the pair's start and the name (as str.strip sees them)
        start = index + 1
    begin = index + len(marker)
    end = header.find(semicolon, begin)
    return begin, len(header) if end < 0 else end


# What str.strip() removes from Latin-1 text (the parser's view of a header), as bytes.
LATIN1_SPACES = bytes(byte for byte in range(256) if chr(byte).isspace())


def safe_return_path(target: object) -> str:
    """``target`` if it is a path on this site, else ``/``: no open redirect.

    Refused: absolute URLs, scheme-relative ``//host``, backslashes (browsers read ``/\\host``
    as ``//host``), control characters, anything not starting with one ``/``.
    """
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return "/"
    if _CONTROL.search(target) or len(target) > MAX_RETURN_PATH:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    # Headers are Latin-1 at best: anything beyond ASCII is percent-encoded, never sent raw.
    return quote(target, safe="/?#[]@!$&'()*+,;=:-._~%")


def split_root(path: str, root_path: str) -> tuple[str, str]:
    """The request's path relative to the app, and the app's root path (``""`` at the root).

    ASGI servers disagree on ``path`` under a ``root_path``: uvicorn (recent versions) and
    Starlette's ``Mount`` put the root path in front of it, as the ASGI spec now says; older
    servers and some proxies' setups give the path below it. Both shapes come out the same.
    """
    root = root_path.rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/", root
    return path, root


def query_params(request: WebRequest) -> dict[str, str]:
    try:
        parsed = parse_qs(request.query, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        return {}
    return {k: v[0] for k, v in parsed.items()}


def etags(header: str) -> set[str]:
    return {tag.strip() for tag in header.split(",")} if header else set()


_PREFLIGHT_HEADERS = ("access-control-", "vary", "allow", "date", "server")


def preflight_header(name: str) -> bool:
    """Whether an app's answer to a CORS preflight may keep this header: its CORS headers,
    never content. A preflight reaches the app without an identity (browsers send none); a
    catch-all handler that answers it with a page must not leak that page to anyone who adds
    two headers, so the shells drop the body and every other header."""
    return name.lower().startswith(_PREFLIGHT_HEADERS)


def private_headers(
    headers: list[tuple[str, str]], vary_cookie: bool
) -> list[tuple[str, str]] | None:
    """What to add to an app's answer for a signed-in user so that no shared cache (a CDN, a
    proxy) keeps it for someone else: ``Cache-Control: private`` and, for a cookie session,
    ``Cookie`` in ``Vary``. ``None`` when the app chose its own ``Cache-Control`` (it knows
    best) or nothing is missing. Header names in any case."""
    vary: str | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == "cache-control":
            return None
        if lowered == "vary":
            vary = value if vary is None else f"{vary}, {value}"
    added = [("Cache-Control", "private")]
    if vary_cookie:
        listed = {v.strip().lower() for v in (vary or "").split(",")}
        if "cookie" not in listed and "*" not in listed:
            added.append(("Vary", "Cookie"))
    return added


def private_raw_headers(
    headers: Sequence[tuple[bytes, bytes]], vary_cookie: bool
) -> Sequence[tuple[bytes, bytes]] | None:
    """:func:`private_headers` for ASGI's byte headers. On the signed-in hot path: when the app
    set neither header (the usual answer), the constant headers without decoding anything."""
    for name, _ in headers:
        if name in _CACHING or (len(name) in _CACHING_LENGTHS and name.lower() in _CACHING):
            break
    else:
        return _RAW_PRIVATE_VARY if vary_cookie else _RAW_PRIVATE
    found = private_headers(
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k.lower() in _CACHING],
        vary_cookie,
    )
    if found is None:
        return None
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in found]


_CACHING = frozenset((b"cache-control", b"vary"))
_CACHING_LENGTHS = (13, 4)
_RAW_PRIVATE = ((b"cache-control", b"private"),)
_RAW_PRIVATE_VARY = (*_RAW_PRIVATE, (b"vary", b"Cookie"))


def set_cookie_headers(cookies: list[str]) -> list[tuple[str, str]]:
    return [("Set-Cookie", c) for c in cookies]


def with_cookies(answer: Respond, cookies: list[str]) -> Respond:
    """``answer`` with ``cookies`` set too: a new answer (answers are immutable, and shared)."""
    headers = (*answer.headers, *set_cookie_headers(cookies))
    return Respond(answer.status, headers, answer.body)


def redirect(location: str, cookies: list[str]) -> Respond:
    headers = (("Location", location), ("Cache-Control", "no-store"), *set_cookie_headers(cookies))
    return Respond(302, headers)


def text(status: int, message: str, extra: list[tuple[str, str]] | list[str]) -> Respond:
    headers: list[tuple[str, str]] = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    for item in extra:
        headers.append(("Set-Cookie", item) if isinstance(item, str) else item)
    return Respond(status, headers, message.encode() + b"\n")


def wants_json(accept: str) -> bool:
    """Whether a client asks for JSON rather than a page (``Accept``, lower case or not)."""
    lowered = accept.lower()
    return "application/json" in lowered and "text/html" not in lowered


ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    502: "server_unavailable",
    503: "temporarily_unavailable",
}


def json_error(
    status: int, description: str, extra: list[tuple[str, str]] | list[str], error: str = ""
) -> Respond:
    """``{"error": ..., "error_description": ...}`` (the shape of OAuth's errors), with the
    safe headers of :func:`text`; ``error`` defaults to a code for the status."""
    body = {"error": error or ERROR_CODES.get(status, "error"), "error_description": description}
    plain = text(status, description, extra)
    kept = (header for header in plain.headers if header[0] != "Content-Type")
    return Respond(status, (("Content-Type", "application/json"), *kept), json.dumps(body).encode())


def failure_response(error: Exception) -> Respond:
    """What the shells answer when a step failed: 400 for a malformed request, 502/503 for the
    server or the adapter, never a traceback."""
    if isinstance(error, BadRequest):
        log.debug("bad request: %s", error)
        return text(400, f"bad request: {error}", [])
    if isinstance(error, SessionTooLarge):
        log.error("sign-in failed: %s", error)
        return text(503, "sign-in is unavailable; try again", [])
    if isinstance(error, StoreError):  # logged by the store, once per outage
        return text(503, "sessions are unavailable; try again", [])
    if isinstance(error, ProviderError):
        log.warning("identity server failure: %s", error)
        return text(502, "the identity server could not be reached; try again", [])
    if isinstance(error, AdapterError):
        log.warning("adapter error: %s", error)
        return text(502, "sign-in is unavailable; try again", [])
    log.error("unexpected error in the adapter (%s)", type(error).__name__)
    return text(503, "sign-in is unavailable; try again", [])


RAW_PATH_SAFE = "/:@!$&'()*+,;=-._~%"  # a path without raw_path: quoted, escapes kept
MAX_FORM_BYTES = 16_384  # a logout form is tiny; anything larger is not one
MAX_BODY_BYTES = 1 << 20  # a body the policy enforcer's claims read; larger: 413 there


def body_too_large(content_length: str | bytes) -> bool:
    """Whether a body announced with this ``Content-Length`` is one the shells do not read for
    the policy enforcer's claims (not a number, or over :data:`MAX_BODY_BYTES`): the app gets
    it as it streams, the enforcer answers 413."""
    return not content_length.isdigit() or int(content_length) > MAX_BODY_BYTES


def parse_form(body: bytes) -> dict[str, str]:
    """A urlencoded form body (the logout POST); :class:`BadRequest` when it is not a small
    form (too large, too many fields)."""
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("the form is too large")
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=20)
    except ValueError:
        raise BadRequest("the form has too many fields") from None
    return dict(pairs)


def parse_cookie_header(header: str) -> dict[str, str]:
    """Cookies from a ``Cookie`` header, leniently: malformed pairs are skipped, first wins."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies
