"""Timings that hold on a shared machine: interleaved rounds, ratios per round.

Stages timed one after the other on a shared host measure the host: another process that
starts between two stages moves their ratio by 2×. Here every compared thing (an *arm*) runs
once per round, in an order that alternates (A B, then B A, …), on the same inputs, with warm
sessions; a ratio is taken inside each round, where the host's load is shared by both arms,
and reported as the median of the rounds with their spread (min–max) and the number of rounds.
Figures are reported, never asserted.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        rank = (len(ordered) - 1) * q / 100
        low, high = math.floor(rank), math.ceil(rank)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def time_repeated(fn: Callable[[], object], min_seconds: float, max_runs: int = 200) -> Timing:
    """One warm-up call, then calls until ``min_seconds`` have passed (at least three)."""
    fn()
    timing = Timing()
    start = time.perf_counter()
    while len(timing.seconds) < 3 or (
        time.perf_counter() - start < min_seconds and len(timing.seconds) < max_runs
    ):
        t = time.perf_counter()
        fn()
        timing.seconds.append(time.perf_counter() - t)
    return timing


@dataclass(frozen=True)
class Arm:
    """One compared thing: ``fn`` processes ``items`` images per call.

    ``fn`` may return the seconds of its own measured part (a scan returns its streaming time,
    as its reported rate does, leaving out opening the model and the reports); otherwise the
    whole call is timed.
    """

    fn: Callable[[], float | None] | Callable[[], object]
    items: int

    def timed(self) -> float:
        t = time.perf_counter()
        own = self.fn()
        wall = time.perf_counter() - t
        return own if isinstance(own, float) and own > 0 else wall


def round_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The arms' order in each round: forward, backward, forward… (A B | B A | A B …), so no
    arm always runs first (cold caches) or last (after the others heated the CPU)."""
    forward = list(names)
    return [forward if r % 2 == 0 else forward[::-1] for r in range(rounds)]


def calls_per_turn(first: float, turn_seconds: float, max_calls: int = 50) -> int:
    """How many calls make one arm's turn last about ``turn_seconds`` (a call took ``first``)."""
    if first <= 0 or turn_seconds <= 0:
        return 1
    return max(1, min(max_calls, round(turn_seconds / first)))


@dataclass
class Rounds:
    """Per-arm rates (items/s), one per round, all rounds of the same arms."""

    rates: dict[str, list[float]]

    @property
    def count(self) -> int:
        return len(next(iter(self.rates.values()), []))

    def rate(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def ratio(self, numerator: str, denominator: str) -> dict[str, Any]:
        """``numerator``'s rate over ``denominator``'s, taken round by round."""
        per_round = [
            a / b for a, b in zip(self.rates[numerator], self.rates[denominator], strict=True) if b
        ]
        return ratio_summary(per_round, self.rate(numerator), self.rate(denominator))


def ratio_summary(
    per_round: Sequence[float], numerator_rate: float | None, denominator_rate: float | None
) -> dict[str, Any]:
    """The JSON form of a ratio: median and spread of the per-round values, and raw rates."""
    return {
        "median": statistics.median(per_round) if per_round else None,
        "spread": [min(per_round), max(per_round)] if per_round else None,
        "rounds": len(per_round),
        "numerator_images_per_s": numerator_rate,
        "denominator_images_per_s": denominator_rate,
    }


def run_rounds(
    arms: Mapping[str, Arm],
    rounds: int,
    turn_seconds: float = 1.0,
    note: Callable[[str], None] = lambda message: None,
) -> Rounds:
    """Warm every arm up, then ``rounds`` interleaved rounds; each turn repeats its arm's call
    as often as makes about ``turn_seconds`` (fixed per arm, so every round does the same)."""
    calls: dict[str, int] = {}
    for name, arm in arms.items():  # a warm-up call (sessions, pools, file cache), timed
        calls[name] = calls_per_turn(arm.timed(), turn_seconds)
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for r, order in enumerate(round_orders(list(arms), rounds)):
        note(f"round {r + 1} of {rounds}: {' '.join(order)}")
        for name in order:
            arm = arms[name]
            seconds = sum(arm.timed() for _ in range(calls[name]))
            rates[name].append(calls[name] * arm.items / seconds)
    return Rounds(rates)


def repeated_interleaved(
    commands: Mapping[str, Callable[[], object]], rounds: int
) -> dict[str, list[float]]:
    """Seconds per call of each command, the commands alternating A B, B A… (no warm-up:
    for start-up times, where the cold part is the point)."""
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for order in round_orders(list(commands), rounds):
        for name in order:
            t = time.perf_counter()
            commands[name]()
            seconds[name].append(time.perf_counter() - t)
    return seconds


@dataclass
class CoreTimes:
    """Per arm, one figure per round: CPU seconds per item, and cores kept busy (CPU / wall)."""

    per_item: dict[str, list[float]]
    busy: dict[str, list[float]]


def core_seconds_rounds(
    arms: Mapping[str, Arm], rounds: int, turn_seconds: float = 1.0
) -> CoreTimes:
    """CPU seconds per item of each arm (all the process's threads: ``time.process_time``),
    one figure per interleaved round, after a warm-up call each.

    Core-time, not wall time: what an image costs the machine however many cores did the
    work, so the costs of stages that run at once on shared cores add up.
    """
    calls: dict[str, int] = {}
    for name, arm in arms.items():
        calls[name] = calls_per_turn(arm.timed(), turn_seconds)
    out = CoreTimes({name: [] for name in arms}, {name: [] for name in arms})
    for order in round_orders(list(arms), rounds):
        for name in order:
            arm = arms[name]
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls[name]):
                arm.fn()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out.per_item[name].append(cpu / (calls[name] * arm.items))
            out.busy[name].append(cpu / wall if wall > 0 else 0.0)
    return out
