"""The mechanism behind dfscan bench's ratios: interleaving, per-round ratios, plug-in stages.

Speed itself is never asserted (a shared machine measures the host); these check the order of
the arms, the median/spread arithmetic, the report's keys and how stages are discovered.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import pytest

from dfscan.scanner.bench import run as bench
from dfscan.scanner.bench.run import BenchSettings, plugin_stages, wanted_stages
from dfscan.scanner.bench.timing import (
    Arm,
    Rounds,
    calls_per_turn,
    core_seconds_rounds,
    ratio_summary,
    repeated_interleaved,
    round_orders,
    run_rounds,
)
from dfscan.scanner.cli.bench import ratio_note
from dfscan.scanner.errors import DataError


def test_rounds_alternate_forward_and_backward():
    assert round_orders(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert round_orders(["a", "b", "c"], 2) == [["a", "b", "c"], ["c", "b", "a"]]


def test_run_rounds_interleaves_after_one_warm_up_each():
    calls: list[str] = []
    arms = {name: Arm(lambda n=name: calls.append(n), items=1) for name in ("a", "b")}
    rounds = run_rounds(arms, rounds=3, turn_seconds=0.0)
    assert calls == ["a", "b", *("a", "b", "b", "a", "a", "b")]  # warm-ups, then 3 rounds
    assert rounds.count == 3 and all(len(r) == 3 for r in rounds.rates.values())


def test_an_arm_that_times_itself_is_rated_by_its_own_seconds():
    own = iter(itertools.cycle([0.5, 0.25]))  # 10 items in 0.5 s, then in 0.25 s
    rounds = run_rounds({"scan": Arm(lambda: next(own), items=10)}, rounds=2, turn_seconds=0)
    assert rounds.rates["scan"] == [40.0, 20.0]  # (the warm-up call took the first 0.5)


def test_ratios_are_taken_within_each_round():
    # the host slows down by 2x between rounds: each round's ratio stays 2
    rounds = Rounds({"fast": [100.0, 50.0, 102.0], "slow": [50.0, 25.0, 50.0]})
    r = rounds.ratio("fast", "slow")
    assert r["median"] == 2.0 and r["spread"] == [2.0, 2.04] and r["rounds"] == 3
    assert r["numerator_images_per_s"] == 100.0 and r["denominator_images_per_s"] == 50.0
    assert ratio_summary([], None, None) == {
        "median": None,
        "spread": None,
        "rounds": 0,
        "numerator_images_per_s": None,
        "denominator_images_per_s": None,
    }


@pytest.mark.parametrize(
    "first,turn,calls", [(0.1, 1.0, 10), (2.0, 1.0, 1), (0.0, 1.0, 1), (1e-6, 1.0, 50)]
)
def test_calls_per_turn(first: float, turn: float, calls: int):
    assert calls_per_turn(first, turn) == calls


def test_repeated_interleaved_alternates_commands():
    calls: list[str] = []
    seconds = repeated_interleaved({k: (lambda k=k: calls.append(k)) for k in "hv"}, 3)
    assert calls == ["h", "v", "v", "h", "h", "v"]
    assert [len(s) for s in seconds.values()] == [3, 3]


def test_ratio_note_shows_median_spread_rounds_and_rates():
    note = ratio_note(ratio_summary([1.9, 2.0, 2.3], 40.0, 20.0))
    assert note == "2.00× (1.90–2.30, 3 rounds; 40.0 vs 20.0 images/s)"
    assert ratio_note(ratio_summary([], None, None)) == "n/a"


def test_the_torch_stage_is_a_plug_in_wanted_only_with_a_checkpoint():
    stages = plugin_stages()  # this venv has dfscan[export]: its entry point is installed
    assert "torch" in stages
    model = Path("m.onnx")
    assert not stages["torch"].wanted(BenchSettings(model))
    assert "torch" in wanted_stages(BenchSettings(model, checkpoint=Path("m.ckpt")))


def test_a_checkpoint_without_the_plug_in_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bench, "plugin_stages", dict)
    assert wanted_stages(BenchSettings(Path("m.onnx"))) == {}
    with pytest.raises(DataError, match="not installed") as err:
        wanted_stages(BenchSettings(Path("m.onnx"), checkpoint=Path("m.ckpt")))
    assert err.value.hint == 'pip install "dfscan[export]"'


def test_core_seconds_count_cpu_not_waiting():
    """Core-time per item: an arm that waits costs (almost) none, one that computes does."""

    def busy() -> None:
        end = time.perf_counter() + 0.01
        while time.perf_counter() < end:
            pass

    arms = {"wait": Arm(lambda: time.sleep(0.01), 2), "busy": Arm(busy, 2)}
    times = core_seconds_rounds(arms, rounds=3, turn_seconds=0.0)
    assert [len(v) for v in times.per_item.values()] == [3, 3]
    assert statistics.median(times.per_item["wait"]) < statistics.median(times.per_item["busy"])
    assert statistics.median(times.busy["wait"]) < statistics.median(times.busy["busy"])
