"""Side-by-side timing: a subject and its baseline, interleaved, in the same run.

Absolute times drift on a shared machine; a ratio of two medians taken in alternating rounds
does not. Each round times ``number`` calls of the subject and then of the baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One line of the table: what was measured, against what, and whether it met its target."""

    name: str
    value: float  # seconds per call (or the unit named in ``unit``)
    baseline: float
    target: float | None = None  # ratio target
    higher_is_better: bool = False
    unit: str = "s"
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": self.target,
            "meets_target": self.meets_target,
        }


def pair(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    number: int,
    rounds: int,
) -> tuple[float, float]:
    """Median seconds per call of ``subject`` and ``baseline``, measured in alternation."""
    for _ in range(max(1, number // 10)):  # warm caches, JITs of the interpreter, allocators
        subject()
        baseline()
    subject_times, baseline_times = [], []
    for _ in range(rounds):
        subject_times.append(_time(subject, number))
        baseline_times.append(_time(baseline, number))
    return statistics.median(subject_times), statistics.median(baseline_times)


def _time(function: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        function()
    return (time.perf_counter() - start) / number


def format_seconds(value: float) -> str:
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.2f} µs"
