"""The cold paths (issue 26): what a process pays for what it has not seen yet.

- **unseen session**: a valid session cookie the process has never decided (after a deploy,
  or one worker of many meeting a session for the first time): the cookie opened (AEAD),
  decompressed, its JSON read, the identity built. Each call carries a new, distinct cookie,
  sealed before the clock runs. What it adds over the bare app, against what Starlette's
  ``SessionMiddleware`` adds opening its cookie (signed, base64 JSON; it remembers nothing, so
  every request opens it) holding the same content: the claims and three tokens as long, as
  an app keeping authlib's token in its session has them. Target ≤ 2.0. Beside it, the same
  against the small cookie of bench/requests.py's rows (a user name and roles).
- **import**: ``import adapter`` as a WSGI app has it (``adapter`` and ``adapter.wsgi``, no
  Starlette loaded: checked) against ``import flask``, and the ASGI import (``from adapter
  import OIDCMiddleware``) against ``import starlette.applications``; each in a fresh
  interpreter (``sys.executable``, bytecode already compiled), the import timed inside it with
  ``time.perf_counter`` (so the interpreter's own start is not in it), subject and baseline
  alternating, medians. The WSGI target is the issue's: the adapter's import at most 60 ms
  more than Flask's own, stated as a ratio to it (the target ratio is 1 + 60 ms / Flask's
  median import of the same run).
- **first request after start**: a new middleware (bearer mode) whose first requests fetch
  discovery and the JWKS from an in-process ``MockTransport`` server that counts its calls and
  yields to the event loop once per answer (so the other requests are waiting meanwhile):
  N first requests at once (``asyncio.gather`` through the ASGI shell) cause exactly one
  discovery and one JWKS fetch (asserted). The row: the time until the first of them is
  answered (discovery, keys, one token check) vs a request whose token was seen before
  (informational).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from adapter import OIDCMiddleware
from bench.login import asgi_get
from bench.measure import Row, median, timed
from bench.requests import (
    LOOP,
    SECRET,
    added_row,
    asgi_caller,
    bare_asgi,
    config,
    identity_server,
    session_cookie,
    session_middleware_caller,
)
from tests.fresh_python import printed_json

UNSEEN_TARGET = 2.0
IMPORT_ALLOWANCE = 0.060  # s: what a WSGI app may pay for the adapter beyond Flask's import
CONCURRENT = 8  # first requests at once after start
UNSEEN_NAME = "unseen session: first request vs SessionMiddleware's cookie open"
WSGI_IMPORT_NAME = "import: adapter (WSGI) vs flask"
ASGI_IMPORT_NAME = "import: adapter (ASGI) vs starlette"
FIRST_NAME = "first request after start (discovery + JWKS once) vs request seen before"

# What each fresh interpreter imports (and the check that it imported only that).
IMPORTS = {
    "adapter (WSGI)": (
        "import adapter, adapter.wsgi",
        "assert 'starlette' not in sys.modules, 'the WSGI import loaded Starlette'",
    ),
    "flask": ("import flask", ""),
    "adapter (ASGI)": ("from adapter import OIDCMiddleware", ""),
    "starlette": ("import starlette.applications", ""),
}


def cold_rows(number: int, rounds: int, quick: bool) -> list[Row]:
    """The unseen-session, import and first-request rows; ``quick``: one run or round of the
    slow ones (the imports, the first requests)."""
    return (
        unseen_session_rows(max(2, number // 3), rounds)
        + import_rows(1 if quick else max(5, rounds))
        + first_request_rows(1 if quick else rounds, number)
    )


# --- the first request of an unseen session ------------------------------------------------------


def unseen_session_rows(number: int, rounds: int) -> list[Row]:
    """A new valid cookie on every call (sealed before the clock) against SessionMiddleware
    opening its cookie, both as what they add to the bare app. SessionMiddleware's cookie
    holds what the adapter's does (the user's claims, the three tokens of the same lengths,
    their expiry), as an app keeping authlib's token in its session has it; a second row
    compares with the small cookie of bench/requests.py (a user name and roles)."""
    idp = identity_server().idp
    ours = OIDCMiddleware(
        bare_asgi, config(), http=httpx.AsyncClient(transport=httpx.MockTransport(idp))
    )
    from starlette.middleware.sessions import SessionMiddleware

    theirs_app = SessionMiddleware(bare_asgi, secret_key=SECRET)
    needed = max(1, number // 10) + number * rounds + 2  # warm-up, rounds, a check each side
    ours_cookies = iter([(b"cookie", session_cookie(ours).encode()) for _ in range(needed)])
    theirs_cookies = iter([(b"cookie", same_content_cookie(theirs_app)) for _ in range(needed)])
    first_request = asgi_caller(ours, extra=lambda: [next(ours_cookies)])
    opened = asgi_caller(theirs_app, extra=lambda: [next(theirs_cookies)])
    assert first_request() == 200, "each new cookie must be a valid session"
    assert opened() == 200
    small = session_middleware_caller(bare_asgi)
    bare = asgi_caller(bare_asgi)
    ours_t, theirs_t, small_t, bare_t = timed([first_request, opened, small, bare], number, rounds)
    assert first_request() == 200, "the cookies made are valid sessions to the last"
    assert next(ours_cookies, None) is None, "every cookie made was used once, none twice"
    return [
        added_row(
            UNSEEN_NAME + ", same content",
            ours_t, theirs_t, bare_t, UNSEEN_TARGET,
        ),
        added_row(
            UNSEEN_NAME + ", small cookie",
            ours_t, small_t, bare_t, None,
        ),
    ]  # fmt: skip


def same_content_cookie(middleware: Any) -> bytes:
    """A SessionMiddleware cookie holding what the adapter's session cookie holds (bench/
    requests.py's ``session_cookie``): the claims, three tokens as long, their expiry."""
    from base64 import b64encode

    session = {
        "user": {
            "sub": "alice",
            "preferred_username": "alice",
            "realm_access": {"roles": ["user"]},
        },
        "token": {
            "id_token": secrets.token_urlsafe(600),
            "access_token": secrets.token_urlsafe(700),
            "refresh_token": secrets.token_urlsafe(500),
            "expires_at": int(time.time()) + 36000,
        },
    }
    data = b64encode(json.dumps(session).encode())
    signed: bytes = middleware.signer.sign(data)
    return b"session=" + signed


# --- import --------------------------------------------------------------------------------------


def import_seconds(name: str) -> float:
    """Seconds ``IMPORTS[name]`` takes in a fresh interpreter (timed inside it)."""
    statement, check = IMPORTS[name]
    code = (
        "import time\nstart = time.perf_counter()\n"
        f"{statement}\n"
        "elapsed = time.perf_counter() - start\nimport sys\n"
        f"{check}\nprint(repr(elapsed))\n"
    )
    return float(printed_json(code))


def compile_adapter() -> None:
    """Write the adapter's bytecode, as a wheel's install does: an editable install under
    ``PYTHONDONTWRITEBYTECODE`` (set on some machines) would compile it from source on every
    import, and the row would time the compiler (250 ms against 120 ms, measured)."""
    import compileall

    import adapter

    compileall.compile_dir(str(Path(adapter.__file__).parent), quiet=1)


def import_rows(runs: int) -> list[Row]:
    if runs > 1:  # bytecode compiled, files in the page cache: a deploy's warm start
        compile_adapter()
        for name in IMPORTS:
            import_seconds(name)
    times: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(runs):
        for name in IMPORTS:
            times[name].append(import_seconds(name))
    wsgi, flask = median(times["adapter (WSGI)"]), median(times["flask"])
    asgi, base = median(times["adapter (ASGI)"]), median(times["starlette"])
    return [
        Row(
            f"{WSGI_IMPORT_NAME}, fresh interpreter",  # target: 60 ms more than flask's
            wsgi,
            flask,
            1 + IMPORT_ALLOWANCE / flask,
        ),
        Row(f"{ASGI_IMPORT_NAME}.applications, fresh interpreter", asgi, base),
    ]


# --- the first request after start ---------------------------------------------------------------


class CountingServer:
    """bench/requests.py's identity server (discovery, JWKS), counting what it answers and
    yielding to the event loop once per answer, as a network would."""

    def __init__(self) -> None:
        self.server = identity_server()
        self.discovery = 0
        self.jwks = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # the other first requests run meanwhile (and must wait)
        if request.url.path.endswith("openid-configuration"):
            self.discovery += 1
        else:
            self.jwks += 1
        return self.server.idp(request)


def first_request_rows(rounds: int, number: int) -> list[Row]:
    """Each round a new middleware (built before the clock) and ``CONCURRENT`` new tokens:
    its first requests, all at once; then a token seen before, on a middleware past its start."""
    firsts: list[float] = []
    all_answered: list[float] = []
    counting = CountingServer()  # replaced each round: a new server for a new middleware
    for index in range(rounds):
        if index:
            counting = CountingServer()
        token = counting.server.token
        app = OIDCMiddleware(
            bare_asgi,
            config(**{"bearer-only": True}),
            http=httpx.AsyncClient(transport=httpx.MockTransport(counting.handle)),
        )
        headers = [
            [(b"authorization", f"Bearer {token(index * CONCURRENT + i)}".encode())]
            for i in range(CONCURRENT)
        ]
        first, last = LOOP.run_until_complete(_all_at_once(app, headers))
        assert (counting.discovery, counting.jwks) == (1, 1), (
            f"{CONCURRENT} first requests fetched discovery {counting.discovery} times and "
            f"the JWKS {counting.jwks} times (once each expected)"
        )
        firsts.append(first)
        all_answered.append(last)
    warm = OIDCMiddleware(
        bare_asgi,
        config(**{"bearer-only": True}),
        http=httpx.AsyncClient(transport=httpx.MockTransport(counting.handle)),
    )
    seen = asgi_caller(warm, headers=[(b"authorization", f"Bearer {token(0)}".encode())])
    assert seen() == 200
    (seen_t,) = timed([seen], max(1, number // 10), max(1, rounds))
    return [
        Row(
            f"{FIRST_NAME}, {CONCURRENT} at once",
            statistics.median(firsts),
            median(seen_t),
            note=f"all {CONCURRENT} answered after {statistics.median(all_answered) * 1e3:.2f} ms",
        )
    ]


async def _all_at_once(app: Any, headers: list[list[tuple[bytes, bytes]]]) -> tuple[float, float]:
    """Seconds until the first, and until the last, of these requests is answered (200)."""
    ends: list[float] = []

    async def one(extra: list[tuple[bytes, bytes]]) -> None:
        status, _, _ = await asgi_get(app, "/", extra=extra)
        assert status == 200, status
        ends.append(time.perf_counter())

    start = time.perf_counter()
    await asyncio.gather(*(one(extra) for extra in headers))
    return min(ends) - start, max(ends) - start
