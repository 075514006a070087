"""The Redis session store, measured with a real ``redis-server`` on loopback.

- a session seen before: answered from the process's remembered decision (no round trip), as
  a ratio of Starlette's SessionMiddleware's added cost, like the cookie row;
- the first request of a session: one Redis read, against the bare app;
- how long a back-channel logout on one replica takes to be refused on another (the pub/sub
  delivery and the second replica's answer), measured from the logout's answer.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from adapter import OIDCMiddleware, load_config
from adapter.web.session import Session
from bench.measure import Row, added, pair, timed
from bench.requests import ISSUER, SECRET, asgi_caller, bare_asgi, server, stored_session_cookie
from tests.redis_server import RedisServer

LOOP = asyncio.new_event_loop()


def redis_rows(number: int, rounds: int) -> list[Row]:
    from starlette.middleware.sessions import SessionMiddleware

    idp, _ = server()
    with tempfile.TemporaryDirectory() as directory, RedisServer(Path(directory)) as redis:
        config = load_config(
            {
                "issuer": ISSUER,
                "client-id": "app",
                "public-client": True,
                "session-secret": SECRET,
                "session-store": "redis",
                "redis-url": redis.url,
            }
        )
        replicas = [
            OIDCMiddleware(
                bare_asgi, config, http=httpx.AsyncClient(transport=httpx.MockTransport(idp))
            )
            for _ in range(2)
        ]
        for replica in replicas:
            asgi_caller(replica)()  # the first request starts the subscriber
            assert replica.shell.wait_until_live(10)
        cookie = stored_session_cookie(replicas[0])
        seen = asgi_caller(replicas[0], headers=[(b"cookie", cookie.encode())])
        assert seen() == 200
        sessions = SessionMiddleware(bare_asgi, secret_key=SECRET)
        from bench.requests import _starlette_session_cookie

        theirs = asgi_caller(sessions, headers=[(b"cookie", _starlette_session_cookie(sessions))])
        bare = asgi_caller(bare_asgi)
        ours_times, theirs_times, bare_times = timed([seen, theirs, bare], number, rounds)
        ours_added, theirs_added = added(ours_times, bare_times), added(theirs_times, bare_times)
        rows = [
            Row(
                "Redis store, session seen before: added vs SessionMiddleware's",
                ours_added.value,
                theirs_added.value,
                1 / 3,
                note="no round trip: the remembered decision",
                noise=ours_added.noise,
                baseline_noise=theirs_added.noise,
            )
        ]
        fresh = [
            stored_session_cookie(replicas[0]) for _ in range(max(number // 10, 10) * (rounds + 2))
        ]
        pool = iter(fresh)
        first = asgi_caller(replicas[1], extra=lambda: [(b"cookie", next(pool).encode())])
        count = max(number // 10, 10)
        first_time, bare_time = pair(first, bare, count, rounds)
        rows.append(Row("Redis store, first request of a session: vs bare", first_time, bare_time))
        rows.append(_logout_delay(replicas, count=5 if number < 100 else 20))
        for replica in replicas:  # their subscriber threads must not outlive this section
            replica.shell.close()
        return rows


def _logout_delay(replicas: list[OIDCMiddleware], count: int) -> Row:
    """From a logout on replica A to the session being refused on replica B (median)."""
    first, second = replicas
    delays = []
    for _ in range(count):
        cookie = stored_session_cookie(first)
        on_second = asgi_caller(
            second, headers=[(b"cookie", cookie.encode()), (b"accept", b"application/json")]
        )
        assert on_second() == 200  # remembered on B
        _, core = first.shell.core()
        session = _load(first, cookie)
        started = time.perf_counter()
        _end(first.shell, core, session)
        while on_second() == 200:
            if time.perf_counter() - started > 1:
                raise AssertionError("the logout did not reach the other replica within 1 s")
        delays.append(time.perf_counter() - started)
    delays.sort()
    return Row(
        "Redis: logout on one replica to refusal on another (median)",
        delays[len(delays) // 2],
        0.100,
        1.0,
        note="target ≤ 100 ms",
    )


def _load(middleware: OIDCMiddleware, cookie: str) -> Session:
    _, core = middleware.shell.core()
    value = cookie.split("=", 1)[1]
    document = core.cookies.codec.open(value, "session")
    assert document is not None
    data = middleware.shell.store.load(document["sid"])
    session = Session.from_dict(data or {})
    assert session is not None
    return session


def _end(shell: Any, core: Any, session: Session) -> None:
    """End a session as a logout does, the core's steps run with the shell's sync clients."""
    from adapter._shell import perform_shared, perform_store
    from adapter.web._steps import NeedStore, drive

    def perform(step: Any) -> Any:
        if isinstance(step, NeedStore):
            return perform_store(shell.store, step)
        return perform_shared(shell.registry, step)

    drive(core.cookies.end(session), perform)
