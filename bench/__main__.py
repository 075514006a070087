"""``make bench``: every benchmark, one table of ratios measured side by side in one run.

``python -m bench [--quick] [--json FILE]``. ``--quick`` runs a handful of iterations of
each (the smoke test in ``make test``: it checks the code runs, not its speed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench.cold import cold_rows
from bench.crypto import assertion_rows, validation_rows
from bench.dpop import dpop_rows
from bench.enforcer import enforcer_rows
from bench.http import http_rows
from bench.jwe import jwe_rows
from bench.login import login_rows
from bench.many_sessions import many_sessions_rows
from bench.measure import Row, format_seconds
from bench.memory import memory_rows
from bench.peers_bearer import peer_bearer_rows
from bench.peers_wsgi import peer_wsgi_rows
from bench.redis_rows import redis_rows
from bench.requests import asgi_rows, jwks_rows, wsgi_rows
from bench.roles import roles_rows
from bench.tenants import tenants_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a few iterations (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the rows as a JSON list")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # authlib's deprecation notices: we only time it
    quick = args.quick
    number, rounds = (20, 2) if quick else (3000, 7)
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as directory:
        sections = [
            ("requests", lambda: asgi_rows(number, rounds) + wsgi_rows(number, rounds)),
            ("/k_jwks", lambda: jwks_rows(number * 8)),
            ("tenants", lambda: tenants_rows(number * 4, Path(directory) / "tenants", quick)),
            ("assertions", lambda: assertion_rows(20 if quick else 300, rounds)),
            (
                "validation",
                lambda: validation_rows(20 if quick else 500, rounds, 200 if quick else 5000),
            ),
            ("dpop", lambda: dpop_rows(number, max(5, number // 10), rounds)),
            ("encrypted ID tokens", lambda: jwe_rows(20 if quick else 2000)),
            ("roles", lambda: roles_rows(number)),
            ("policy enforcer", lambda: enforcer_rows(number, rounds)),
            ("peers: bearer APIs", lambda: peer_bearer_rows(number, rounds)),
            ("peers: WSGI sign-in", lambda: peer_wsgi_rows(number, rounds)),
            ("login", lambda: login_rows(rounds, quick)),
            ("cold paths", lambda: cold_rows(number, rounds, quick)),
            ("http", lambda: http_rows(1 if quick else 4, Path(directory), quick)),
            ("memory", lambda: memory_rows(200 if quick else 100_000, 100 if quick else 100_000)),
            # After the memory rows: its 100,000 cookies (~700 MB while it runs) would raise
            # the resident memory those rows divide by.
            ("many sessions", lambda: many_sessions_rows(500 if quick else 100_000, quick)),
            # Last: its Redis clients and threads would otherwise stir the memory rows.
            ("redis", lambda: redis_rows(number, rounds)),
        ]
        for name, run in sections:
            print(f"# {name} ...", file=sys.stderr, flush=True)
            rows += run()
    print(table(rows))
    print(
        f"\n{len(rows)} rows in {time.monotonic() - started:.0f} s; "
        f"{sum(1 for r in rows if r.meets_target is False)} below target, "
        f"{sum(1 for r in rows if r.is_noise)} within noise"
    )
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in rows], indent=2))
    return 0


def table(rows: list[Row]) -> str:
    """The rows as text; a value that is negative or within its noise reads "noise" in the ok
    column, never "yes" (see bench/measure.py)."""
    lines = [f"{'benchmark':<72} {'value':>12} {'baseline':>12} {'ratio':>7} {'target':>8}  ok"]
    for row in rows:
        value, base = _show(row, row.value), _show(row, row.baseline)
        target = (
            ""
            if row.target is None
            else ("≥" if row.higher_is_better else "≤") + f"{row.target:.2f}"
        )
        ok = "noise" if row.is_noise else {True: "yes", False: "NO", None: ""}[row.meets_target]
        lines.append(f"{row.name:<72} {value:>12} {base:>12} {row.ratio:>7.2f} {target:>8}  {ok}")
    return "\n".join(lines)


def _show(row: Row, number: float) -> str:
    if row.unit == "s":
        return format_seconds(number)
    if row.unit == "req/s":
        return f"{number:,.0f}/s"
    return f"{number:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
