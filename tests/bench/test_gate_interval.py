from __future__ import annotations

import numpy as np
import pytest

from compresskit.bench.gate import GateSpec, evaluate_gates
from compresskit.bench.markdown import gate_rows
from compresskit.bench.speed import launches_ratio_interval, ratio_interval


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


def _timing(monkeypatch, per_round: int, first: dict, later: list[dict], **settings):
    """A SpeedRun whose timings come from ``first`` (every candidate), then ``later[k]`` on the k-th re-measure."""
    from types import SimpleNamespace

    from compresskit.bench import measure
    from compresskit.bench.settings import SpeedSettings

    calls = []

    def fake(candidates, settings, threads, seed, e2e_names):
        source = first if not calls else later[len(calls) - 1]
        calls.append(([c.name for c in candidates], settings.batch_sizes, seed))
        return {c.name: {"latency": list(source[c.name])} for c in candidates}, {c.name: {} for c in candidates}

    monkeypatch.setattr(measure, "_time_one_thread_count", fake)
    names = ["baseline", "teacher_int8", "quantize_nncf", "bundle"]
    roles = {"baseline": "baseline", "teacher_int8": "reference"}
    candidates = [SimpleNamespace(name=n, role=roles.get(n, "candidate"), step=0 if n in roles else i, precision="f32",
                                  artifact=SimpleNamespace(format="torch" if n == "baseline" else "openvino"))
                  for i, n in enumerate(names)]
    settings = SpeedSettings(threads=[2], batch_sizes=[1], rounds=10, per_round=per_round, e2e=False, **settings)
    monkeypatch.setattr(measure, "reference_name", lambda c, names: None)
    timing = measure.SpeedRun(candidates, settings, 0, [])
    timing.measure(2)
    return timing, candidates, calls


def test_a_straddling_speed_gate_is_timed_again_with_its_reference_until_its_interval_clears(monkeypatch):
    """Issue 44: pass when the interval clears the threshold, fail when it misses; in between time again."""
    from compresskit.bench.report import _remeasure_marginal

    spells = [1.0, 1.25, 0.95, 1.3, 1.0, 1.2, 0.97, 1.35, 1.0, 1.15]  # a noisy machine: slow spells per round
    first = {"baseline": _rounds([40.0] * 10, 20, 0.1, 1), "teacher_int8": _rounds([4.0 * s for s in spells], 20, 0.01, 2),
             "quantize_nncf": _rounds([1.0] * 10, 20, 0.01, 3), "bundle": _rounds([0.98] * 10, 20, 0.01, 4)}
    steady = {"teacher_int8": _rounds([4.1] * 10, 20, 0.01, 5), "bundle": _rounds([0.98] * 10, 20, 0.01, 6)}
    timing, candidates, calls = _timing(monkeypatch, 20, first, [steady, steady, steady])
    gates = [GateSpec(metric="speedup_vs_teacher_int8", goal="threshold", value=4.1),  # final = bundle (last step)
             GateSpec(metric="speedup_vs_baseline", goal="threshold", value=25)]       # 40 / 0.98: clear at once
    before = timing.results["bundle"][2]["speedup_vs_teacher_int8"]
    assert before["interval"][0] < 4.1 < before["interval"][1], "the first measurement straddles the threshold"
    _remeasure_marginal(timing, candidates, gates, 2, 3, timing.settings, progress=lambda m: None)
    after = timing.results["bundle"][2]["speedup_vs_teacher_int8"]
    assert sorted(calls[1][0]) == ["bundle", "teacher_int8"] and calls[1][1] == [1], "only the gate's pair, at batch 1"
    assert after["remeasured"] >= 1 and after["rounds"] == 10 * (1 + after["remeasured"])
    assert after["first_measurement"] == {"value": before["value"], "interval": before["interval"]}
    pooled_ref = first["teacher_int8"] + steady["teacher_int8"] * after["remeasured"]
    pooled = first["bundle"] + steady["bundle"] * after["remeasured"]
    assert after["value"] == pytest.approx(np.median(pooled_ref) / np.median(pooled))
    assert after["interval"][1] - after["interval"][0] < before["interval"][1] - before["interval"][0]
    assert timing.results["bundle"][2]["speedup_vs_baseline"].get("remeasured") is None, "a clear gate: untouched"
    assert timing.results["teacher_int8"][2]["latency_ms_p50"]["n"] == 200, "other figures keep the first measurement"
    result = evaluate_gates({"candidates": [{"name": c.name, "final": c.name == "bundle",
                                             "metrics": timing.results[c.name][2]} for c in candidates]}, gates[:1])[0]
    assert result.remeasured == after["remeasured"]
    assert "re-measure" in gate_rows([result])[1][0][-1]


def test_a_gate_still_straddling_after_its_re_measures_is_decided_on_its_central_value_and_says_marginal(monkeypatch):
    from compresskit.bench.report import _remeasure_marginal

    spells = [1.0, 1.3, 0.9, 1.35, 1.0, 1.25, 0.95, 1.4, 1.0, 1.2]
    noisy = {"baseline": _rounds([40.0] * 10, 20, 0.1, 1), "teacher_int8": _rounds([4.0 * s for s in spells], 20, 0.01, 2),
             "quantize_nncf": _rounds([1.0] * 10, 20, 0.01, 3), "bundle": _rounds([1.0] * 10, 20, 0.01, 4)}
    timing, candidates, calls = _timing(monkeypatch, 20, noisy, [noisy, noisy, noisy])
    gate = GateSpec(metric="speedup_vs_teacher_int8", goal="threshold", value=4.4)
    _remeasure_marginal(timing, candidates, [gate], 2, 3, timing.settings, progress=lambda m: None)
    assert len(calls) == 3, "timed again at most `remeasure` times"
    record = timing.results["bundle"][2]["speedup_vs_teacher_int8"]
    report = {"candidates": [{"name": c.name, "final": c.name == "bundle", "metrics": timing.results[c.name][2]}
                             for c in candidates]}
    result = evaluate_gates(report, [gate])[0]
    assert (result.decided, result.remeasured) == ("marginal", 2)
    assert result.passed == (record["value"] >= 4.4), "decided on the central value"
    assert "marginal" in gate_rows([result])[1][0][-1] and "after 2 re-measure" in gate_rows([result])[1][0][-1]


def test_the_interval_over_several_launches_holds_the_spread_between_them():
    """Two worker processes of the same pair can differ by more than either one's rounds vary: the interval over
    both launches covers both, where each alone is narrow and misses the other."""
    a = (_rounds([10.0] * 10, 20, 0.05, 1), _rounds([1.0] * 10, 20, 0.01, 2))  # this launch: 10x
    b = (_rounds([10.0] * 10, 20, 0.05, 3), _rounds([0.8] * 10, 20, 0.01, 4))  # the next one: 12.5x
    alone_a, alone_b = ratio_interval(*a, 20, seed=0), ratio_interval(*b, 20, seed=0)
    assert alone_a[1] < 10.5 and alone_b[0] > 12.0, "each launch alone: a narrow interval that misses the other"
    low, high = launches_ratio_interval([a, b], 20, seed=0)
    assert low < 10.1 and high > 12.4
    assert launches_ratio_interval([a], 20, seed=0) == alone_a, "one launch: the rounds' bootstrap"
    assert launches_ratio_interval([a, b], 20, seed=0) == (low, high), "seeded"


def test_every_speed_gate_is_timed_in_at_least_min_launches_worker_launches(monkeypatch):
    from compresskit.bench.report import _remeasure_marginal

    steady = {"baseline": _rounds([40.0] * 10, 20, 0.1, 1), "teacher_int8": _rounds([4.0] * 10, 20, 0.01, 2),
              "quantize_nncf": _rounds([1.0] * 10, 20, 0.01, 3), "bundle": _rounds([0.5] * 10, 20, 0.01, 4)}
    slower = {**steady, "bundle": _rounds([0.6] * 10, 20, 0.01, 5)}  # the second launch of the bundle runs slower
    timing, candidates, calls = _timing(monkeypatch, 20, steady, [slower, slower], min_launches=2)
    gates = [GateSpec(metric="speedup_vs_teacher_int8", goal="threshold", value=4),  # 8x, then 6.7x: clear both times
             GateSpec(metric="params", goal="threshold", value=1e9)]               # no interval: never timed
    _remeasure_marginal(timing, candidates, gates, 2, 3, timing.settings, progress=lambda m: None)
    assert len(calls) == 2 and sorted(calls[1][0]) == ["bundle", "teacher_int8"], "clear, and still timed once more"
    record = timing.results["bundle"][2]["speedup_vs_teacher_int8"]
    assert (record["launches"], record["remeasured"], record["rounds"]) == (2, 1, 20)
    assert record["interval"][0] < 6.8 and record["interval"][1] > 7.9, "the interval holds both launches"
    assert record["first_measurement"]["value"] == pytest.approx(8.0, rel=0.01)


@pytest.mark.parametrize("value,interval,passed", [(4.6, [4.4, 4.8], True), (4.1, [3.9, 4.3], False),
                                                   (3.95, [3.8, 4.1], False)])
def test_a_gate_whose_marginal_rule_is_fail_passes_only_what_its_interval_shows(value, interval, passed):
    gate = GateSpec(metric="speedup_vs_teacher_int8", goal="threshold", value=4, marginal="fail")
    result = evaluate_gates(_report(value, interval), [gate])[0]
    assert result.passed == passed
    if (value, passed) == (4.1, False):
        assert result.decided == "marginal" and result.reason.startswith("not shown: its 95% interval")
        assert "FAIL (not shown: its 95% interval [3.9, 4.3] still straddles 4" in gate_rows([result])[1][0][-1]
        again = gate_rows([result.model_copy(update={"remeasured": 2})])[1][0][-1]
        assert again.endswith("(after 2 re-measure(s))") and "clear" not in again, "a straddling gate is not 'clear'"
    central = evaluate_gates(_report(value, interval), [gate.model_copy(update={"marginal": "central"})])[0]
    assert central.passed == (value >= 4), "the default: the central value decides"
