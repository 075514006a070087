"""Front-channel logout (OpenID Connect Front-Channel Logout 1.0): the server frames a logout.

When a user logs out at the identity server, it renders a page with an iframe per client; this
app's (``frontchannel-logout-path``) is loaded with the server's ``iss`` and the server
session's ``sid`` (Keycloak: "Front channel logout" with "Front-channel logout session
required"). ``iss`` must be this app's issuer (of the request's tenant), and then every session
of that server session ends, as a back-channel logout of that ``sid`` ends them
(:func:`adapter.web._backchannel.end_server_sessions`: in every process with the Redis store).

Cookies play no part: a framed page often gets none (third-party cookies are blocked), and a
cookie that does come decides nothing; the ``sid`` names the sessions. The answer is a tiny page
that only the issuer's origin may frame (``Content-Security-Policy: frame-ancestors``), never
cached; a wrong or missing ``iss`` or ``sid`` is 400 and ends nothing. The route is off unless
``frontchannel-logout = true``: anyone who learns a ``sid`` (every client of the server session
receives it in its ID tokens) can end its sessions here, where a back-channel logout needs the
server's signature.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from functools import cache
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from adapter.web._backchannel import end_server_sessions
from adapter.web._context import RouteContext
from adapter.web._http import query_params, same_text
from adapter.web._steps import Handling, Respond, WebRequest
from adapter.web.session import ServerLogouts

log = logging.getLogger(__name__)
MAX_SID_LENGTH = 256  # Keycloak's are UUIDs (36); anything far longer is not a session id
_SID = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces
_PAGE = b'<!doctype html><meta charset="utf-8"><title>Signed out</title><p>Signed out.\n'
BUDGET_SHARE = 4  # front-channel logouts may fill a quarter of the logout records at most
BUSY = (("Retry-After", "10"),)


def frontchannel_logout(core: RouteContext, request: WebRequest) -> Handling:
    """End the sessions of the server session ``sid`` named by the issuer ``iss``."""
    headers = _headers(core.config.issuer)
    if request.method == "HEAD":  # a link checker or preview: it ends nothing
        return Respond(200, (*headers, ("Content-Type", "text/html; charset=utf-8")))
    if request.method != "GET":
        return _answer(405, "the front-channel logout is a GET", [*headers, ("Allow", "GET, HEAD")])
    query = query_params(request)
    iss, sid = query.get("iss", ""), query.get("sid", "")
    if not iss or not same_text(iss, core.config.issuer):
        log.info("front-channel logout refused: its iss is not this app's issuer")
        return _answer(400, "iss must be the issuer this app signs in with", headers)
    if len(sid) > MAX_SID_LENGTH or not _SID.fullmatch(sid):
        log.info("front-channel logout refused: no sid, or not one the server would send")
        return _answer(400, "sid must name the server's session", headers)
    if not _budget(core.cookies.logouts, core.web.session_max_age).take(time.monotonic()):
        return _answer(503, "too many front-channel logouts; try again", [*headers, *BUSY])
    # No logout token, so no jti to check: a fresh one, as the shared record wants one.
    jti = "frontchannel:" + secrets.token_urlsafe(16)
    _, untold = yield from end_server_sessions(core, sid, None, jti, front=True)
    if untold:  # ended here; Redis refused (the log says so): the page cannot say more
        return _answer(503, "signed out here; other processes not told", headers)
    log.info("front-channel logout: sessions of server session ended")
    return Respond(200, (*headers, ("Content-Type", "text/html; charset=utf-8")), _PAGE)


@cache
def _headers(issuer: str) -> tuple[tuple[str, str], ...]:
    """Never cached; framable by the issuer's origin alone (its scheme, host and port)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return (
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", f"default-src 'none'; frame-ancestors {origin}"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    )


def _answer(status: int, message: str, headers: tuple[tuple[str, str], ...] | list[Any]) -> Respond:
    return Respond(
        status, (*headers, ("Content-Type", "text/plain; charset=utf-8")), message.encode() + b"\n"
    )


class Budget:
    """How many front-channel logouts this process records: a token bucket that lets through
    bursts of ``burst`` and, over a session's lifetime, a ``BUDGET_SHARE``-th of the logout
    records (:class:`~adapter.web.session.ServerLogouts`). Made-up ``sid`` values cannot be
    told from real ones; they are kept in the records' own front-channel table (which drops
    its oldest without the fail-closed watermark, so no flood signs everyone out), and this
    budget bounds what one process writes to Redis for every other."""

    def __init__(self, records: int, lifetime: float, burst: float = 1000.0) -> None:
        self.rate = records / BUDGET_SHARE / lifetime  # per second
        self.burst = min(burst, records / BUDGET_SHARE)
        self._tokens = self.burst
        self._at: float | None = None
        self._lock = threading.Lock()
        self._said = 0.0

    def take(self, now: float) -> bool:
        with self._lock:
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            if now - self._said > 60:
                self._said = now
                log.warning(
                    "front-channel logouts refused: more than %.1f a second arrive (made-up "
                    "sids?); back-channel logout keeps working",
                    self.rate,
                )
            return False


_budgets: WeakKeyDictionary[ServerLogouts, Budget] = WeakKeyDictionary()
_budgets_lock = threading.Lock()


def _budget(logouts: ServerLogouts, lifetime: int) -> Budget:
    """The budget of a table of logout records (the shell's: it outlives reloads)."""
    with _budgets_lock:
        budget = _budgets.get(logouts)
        if budget is None:
            budget = _budgets[logouts] = Budget(logouts.max_entries, lifetime)
        return budget
