"""Issue 26's login and cold-path rows run (one round each): names present, numbers finite.

As in test_bench_smoke.py, nothing here looks at the size or sign of a timing. The rows assert
what they measure themselves: each login ends on the first page signed in, each callback
writes the session, each unseen cookie is a valid session, the WSGI import loads no Starlette,
and the first requests after start fetch discovery and the JWKS once.
"""

from __future__ import annotations

import math

from bench.cold import (
    ASGI_IMPORT_NAME,
    FIRST_NAME,
    UNSEEN_NAME,
    UNSEEN_TARGET,
    WSGI_IMPORT_NAME,
    cold_rows,
)
from bench.login import CALLBACK_NAME, CALLBACK_TARGET, LOGIN_NAME, LOGIN_TARGET, login_rows
from bench.measure import Row


def _finite(rows: list[Row]) -> None:
    for row in rows:
        assert math.isfinite(row.value), row
        assert math.isfinite(row.baseline), row  # differences may read <= 0: never checked
        assert math.isfinite(row.ratio), row


def _targets(rows: list[Row], prefix: str) -> list[float | None]:
    found = [row.target for row in rows if row.name.startswith(prefix)]
    assert found, f"no {prefix!r} row in {[row.name for row in rows]}"
    return found


def test_the_login_rows_run() -> None:
    """Against the real test identity server (started and stopped by the rows)."""
    rows = login_rows(1, quick=True)
    assert _targets(rows, LOGIN_NAME)[0] == LOGIN_TARGET
    assert _targets(rows, CALLBACK_NAME) == [CALLBACK_TARGET]
    assert all(row.name.startswith((LOGIN_NAME, CALLBACK_NAME)) for row in rows)
    _finite(rows)


def test_the_cold_rows_run() -> None:
    rows = cold_rows(20, 1, quick=True)
    assert _targets(rows, UNSEEN_NAME)[0] == UNSEEN_TARGET
    (wsgi_target,) = _targets(rows, WSGI_IMPORT_NAME)
    assert wsgi_target is not None
    assert wsgi_target > 1  # 60 ms more than flask's import, as a ratio to it
    assert _targets(rows, ASGI_IMPORT_NAME) == [None]
    assert _targets(rows, FIRST_NAME) == [None]
    _finite(rows)
