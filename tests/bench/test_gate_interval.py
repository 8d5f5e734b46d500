from __future__ import annotations

import numpy as np
import pytest

from compresskit.bench.gate import GateSpec, evaluate_gates
from compresskit.bench.markdown import gate_rows
from compresskit.bench.speed import ratio_interval


def _rounds(medians: list[float], per_round: int, jitter: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(m + jitter * rng.standard_normal())
            for m in medians for _ in range(per_round)]


def test_the_interval_brackets_the_ratio_and_widens_with_noise_between_rounds():
    steady_ref, steady = _rounds([10.0] * 10, 20, 0.05, 1), _rounds([2.0] * 10, 20, 0.01, 2)
    low, high = ratio_interval(steady_ref, steady, 20, seed=0)
    assert low <= np.median(steady_ref) / np.median(steady) <= high and high - low < 0.2
    spells = [10.0, 14.0, 9.0, 15.0, 10.0, 13.0, 9.5, 16.0, 10.0, 12.0]  # slow spells hit whole rounds
    noisy_low, noisy_high = ratio_interval(_rounds(spells, 20, 0.05, 3), steady, 20, seed=0)
    assert noisy_high - noisy_low > 3 * (high - low)
    assert ratio_interval(steady_ref, steady, 20, seed=0) == (low, high), "seeded: the same interval twice"


def _report(value: float, interval: list[float]) -> dict:
    record = {"value": value, "unit": "x", "direction": "higher", "interval": interval}
    return {"candidates": [{"name": "baseline", "metrics": {}},
                           {"name": "s", "final": True, "metrics": {"speedup_vs_teacher_int8": record}}]}


@pytest.mark.parametrize("value,interval,passed,decided", [
    (4.6, [4.4, 4.8], True, "clear"), (4.1, [3.9, 4.3], True, "marginal"),
    (3.95, [3.8, 4.1], False, "marginal"), (3.5, [3.3, 3.7], False, "clear")])
def test_a_speed_gate_says_whether_its_interval_clears_the_threshold(value, interval, passed, decided):
    gate = GateSpec(metric="speedup_vs_teacher_int8", goal="threshold", value=4)
    result = evaluate_gates(_report(value, interval), [gate])[0]
    assert (result.passed, result.decided, result.observed_interval) == (passed, decided, interval)
    row = gate_rows([result])[1][0]
    assert (("marginal" in row[-1]) == (decided == "marginal")) and f"[{interval[0]:.4g}, {interval[1]:.4g}]" in row[3]


def test_a_reported_interval_holds_its_central_value_after_rounding():
    from compresskit.bench.measure import holding

    assert holding((0.94, 0.95100001), 0.9510043) == [0.94, 0.9511], "widened to the value, rounded outwards"
    assert holding((1.23456, 1.5), 1.3) == [1.2345, 1.5]
    low, high = holding((2.00001, 2.00002), 1.99)
    assert low == 1.99 and high >= 2.00002
