"""The benchmarks run (a handful of iterations each): the code cannot rot. Speed is not tested."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.__main__ import main


def test_every_benchmark_runs(tmp_path: Path, capsys: object) -> None:
    output = tmp_path / "rows.json"
    assert main(["--quick", "--json", str(output)]) == 0
    rows = json.loads(output.read_text())
    names = " ".join(row["name"] for row in rows)
    for part in ("ASGI", "WSGI", "/k_jwks", "assertion RS256", "assertion EdDSA",
                 "validation", "HTTP (uvicorn)", "memory"):  # fmt: skip
        assert part in names, part
    for row in rows:
        assert set(row) == {"name", "value", "baseline", "ratio", "target", "meets_target"}
        # Numbers, never their sign: a difference of two timings may be negative noise.
        assert math.isfinite(row["value"])
        assert math.isfinite(row["baseline"])
