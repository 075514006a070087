"""The many-sessions rows run (a few hundred sessions): names present, numbers finite.

Nothing here looks at a timing's size; the memory row's value must still be a real measure:
something traced, within the (lowered) bound the cache keeps.
"""

from __future__ import annotations

import math

from bench.many_sessions import many_sessions_rows


def test_many_sessions_rows_run() -> None:
    rows = many_sessions_rows(300, quick=True)
    names = [row.name for row in rows]
    assert names == [
        "300 distinct sessions round-robin: throughput vs SessionMiddleware",
        "300 distinct sessions: remembered decisions' memory at the byte bound",
    ]
    for row in rows:
        for number in (row.value, row.baseline, row.ratio):
            assert math.isfinite(number), row
            assert number > 0, row
    throughput, memory = rows
    assert throughput.unit == "req/s"
    assert throughput.higher_is_better
    assert memory.unit == "bytes"
    assert memory.value <= 2 * memory.baseline
