"""Side-by-side timing: a subject and its baselines, interleaved, in the same run.

Absolute times drift on a shared machine; a ratio of two medians taken in alternating rounds
does not. Each round times ``number`` calls of each function in turn. What a layer *adds*
(the middleware over the bare app) is a difference of two such times, and a difference can be
smaller than the machine's jitter, or even negative: :func:`added` says how large that noise
is, and a row whose value lies within it is marked "noise" and never counts as meeting its
target (a slower or busier machine must not turn noise into a pass).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

NOISE_MADS = 3  # a difference within this many median absolute deviations of zero is noise


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
    noise: float = 0.0  # how far from zero ``value`` must be to mean anything (differences)
    baseline_noise: float = 0.0  # the same for ``baseline``
    unsettled: bool = False  # the set-up cannot tell (load generator and servers share cores)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def is_noise(self) -> bool:
        """The value (or the baseline) is negative or within its noise, or the set-up cannot
        tell: the ratio says nothing."""
        return self.unsettled or self.value <= self.noise or self.baseline <= self.baseline_noise

    @property
    def meets_target(self) -> bool | None:
        if self.target is None or self.is_noise:
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
            "noise": self.is_noise,
        }


@dataclass(frozen=True)
class Added:
    """What a subject adds over its baseline: the median of the per-round differences, and the
    noise around it (``NOISE_MADS`` median absolute deviations of those differences)."""

    value: float
    noise: float


def timed(functions: Sequence[Callable[[], object]], number: int, rounds: int) -> list[list[float]]:
    """Seconds per call of each function, one entry per round; they take turns in each round."""
    for _ in range(max(1, number // 10)):  # warm caches, JITs of the interpreter, allocators
        for function in functions:
            function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for record, function in zip(times, functions, strict=True):
            record.append(_time(function, number))
    return times


def pair(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    number: int,
    rounds: int,
) -> tuple[float, float]:
    """Median seconds per call of ``subject`` and ``baseline``, measured in alternation."""
    subject_times, baseline_times = timed([subject, baseline], number, rounds)
    return statistics.median(subject_times), statistics.median(baseline_times)


def alternated(
    subject: Callable[[], object], baseline: Callable[[], object], calls: int
) -> tuple[float, float]:
    """Median seconds per call of ``subject`` and ``baseline``, called turn about, one call
    each, and each call timed on its own (the order swapped every pair).

    For two timings a few per cent apart on a machine whose speed drifts (a shared virtual
    machine slowed to half speed and back within a second here): paired a few µs apart, both
    calls meet the same speed, and the medians drop the calls a collector or a neighbour
    interrupted. With ``pair``'s rounds of ``number`` calls, a middleware that cannot beat its
    baseline read 1.16 of it in one run; turn about, 0.97 ± 0.003 in three runs in a row.
    """
    for _ in range(max(1, calls // 20)):  # warm caches and allocators, as ``timed`` does
        subject()
        baseline()
    subject_ns: list[int] = []
    baseline_ns: list[int] = []
    clock = time.perf_counter_ns
    for index in range(calls):
        if index & 1:
            start = clock()
            subject()
            middle = clock()
            baseline()
            end = clock()
            subject_ns.append(middle - start)
            baseline_ns.append(end - middle)
        else:
            start = clock()
            baseline()
            middle = clock()
            subject()
            end = clock()
            baseline_ns.append(middle - start)
            subject_ns.append(end - middle)
    return statistics.median(subject_ns) / 1e9, statistics.median(baseline_ns) / 1e9


def added(subject_times: Sequence[float], baseline_times: Sequence[float]) -> Added:
    """What the subject adds, from the rounds of :func:`timed` (paired round by round)."""
    differences = [s - b for s, b in zip(subject_times, baseline_times, strict=True)]
    middle = statistics.median(differences)
    spread = statistics.median(abs(d - middle) for d in differences)
    return Added(middle, NOISE_MADS * spread)


def median(times: Sequence[float]) -> float:
    return statistics.median(times)


def _time(function: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        function()
    return (time.perf_counter() - start) / number


def format_seconds(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.2f} µs"
