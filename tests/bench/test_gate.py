from __future__ import annotations

import json
import math

import pytest

from compresskit.bench.gate import evaluate_gates, load_gates, parse_gates, resolve_threshold, verdict
from compresskit.bench.schema import metric
from compresskit.errors import ConfigError
from tests.helpers import run_cli


def _report(**final_metrics) -> dict:
    baseline = {"latency_ms_p50": metric("latency_ms_p50", 10.0), "kid": metric("kid", 0.10),
                "r_precision": metric("r_precision", 0.50)}
    final = {name: metric(name, value) for name, value in final_metrics.items()}
    return {"schema_version": 2, "status": "done", "recipe": {"name": "t", "gates": []}, "candidates": [
        {"name": "baseline", "step": 0, "artifact_id": "a0", "format": "torch", "role": "baseline", "final": False,
         "backend": "torch", "metrics": baseline, "by_threads": {"1": {"latency_ms_p50": metric("latency_ms_p50", 20.0)}}},
        {"name": "quantize_nncf", "step": 4, "artifact_id": "a4", "format": "openvino", "role": "candidate",
         "final": True, "backend": "openvino", "metrics": final,
         "by_threads": {"1": {"latency_ms_p50": metric("latency_ms_p50", 5.0)}}},
    ], "gates": [], "verdict": "no gates"}


@pytest.mark.parametrize(("goal", "value", "baseline", "higher", "expected"), [
    ("threshold", 3.0, None, True, 3.0),
    ("min_improvement", 2.0, 10.0, False, 8.0),           # latency must drop by 2 ms
    ("min_improvement", 0.1, 0.5, True, 0.6),             # R-precision must rise by 0.1
    ("percent_min_improvement", 40, 10.0, False, 6.0),    # 40 % faster
    ("max_degradation", 0.05, 0.10, False, 0.15),         # KID may grow by 0.05
    ("max_degradation", 0.1, 0.5, True, 0.4),             # R-precision may fall by 0.1
    ("percent_max_degradation", 10, 0.5, True, 0.45),
    ("percent_max_degradation", 50, 0.10, False, 0.15),
])
def test_goals_resolve_against_the_baseline_in_the_metric_direction(goal, value, baseline, higher, expected):
    assert resolve_threshold(goal, value, baseline, higher) == pytest.approx(expected)


def test_passing_and_failing_gates_name_observed_threshold_and_baseline():
    report = _report(latency_ms_p50=4.0, kid=0.2, r_precision=0.45)
    gates = parse_gates([
        {"metric": "latency_ms_p50", "goal": "percent_min_improvement", "value": 50},   # 4 <= 5: pass
        {"metric": "kid", "goal": "max_degradation", "value": 0.05},                     # 0.2 > 0.15: fail
        {"metric": "r_precision", "goal": "percent_max_degradation", "value": 20},       # 0.45 >= 0.4: pass
        {"metric": "latency_ms_p50", "goal": "threshold", "value": 4.0, "threads": 1},   # 5 > 4 at 1 thread: fail
    ], "gates")
    results = evaluate_gates(report, gates)
    assert [r.passed for r in results] == [True, False, True, False]
    assert results[1].observed == 0.2 and results[1].baseline == 0.1
    assert results[1].threshold == pytest.approx(0.15)
    assert results[3].observed == 5.0 and results[3].baseline == 20.0
    assert verdict(results) == "fail" and verdict(results[:1]) == "pass" and verdict([]) == "no gates"


def test_a_missing_or_nan_metric_fails_closed():
    report = _report(latency_ms_p50=float("nan"))
    results = evaluate_gates(report, parse_gates([
        {"metric": "latency_ms_p50", "goal": "threshold", "value": 1e9},
        {"metric": "kid", "goal": "threshold", "value": 1e9},
        {"metric": "psnr_vs_teacher", "goal": "max_degradation", "value": 1.0},   # no baseline figure either
        {"metric": "kid", "goal": "threshold", "value": 1.0, "candidate": "distill"},
    ], "gates"))
    assert not any(r.passed for r in results)
    assert "missing, NaN or infinite" in results[0].reason and "missing, NaN or infinite" in results[1].reason
    assert "no candidate 'distill'" in results[3].reason


@pytest.mark.parametrize("infinite", [math.inf, -math.inf])
def test_an_infinite_metric_fails_like_nan(infinite):
    """+inf speedup or -inf latency would pass a one-sided comparison; it must fail instead."""
    report = _report(speedup_vs_baseline=infinite, latency_ms_p50=infinite)
    results = evaluate_gates(report, parse_gates([
        {"metric": "speedup_vs_baseline", "goal": "threshold", "value": 2},
        {"metric": "latency_ms_p50", "goal": "threshold", "value": 100},
    ], "gates"))
    assert [r.passed for r in results] == [False, False]
    assert all("missing, NaN or infinite" in r.reason for r in results)
    report = _report(kid=0.1)
    report["candidates"][0]["metrics"]["kid"]["value"] = math.inf  # an infinite baseline cannot set a threshold
    kid = evaluate_gates(report, parse_gates([{"metric": "kid", "goal": "max_degradation", "value": 1}], "g"))[0]
    assert not kid.passed and "baseline has no finite kid" in kid.reason


def test_final_is_the_recipes_last_step_even_when_it_was_not_measured():
    report = _report(kid=0.1)
    report["candidates"][1]["final"] = False  # quantize_nncf measured, but the recipe ends with another step
    report["final_step"] = "export_openvino"
    result = evaluate_gates(report, parse_gates([{"metric": "kid", "goal": "threshold", "value": 1}], "g"))[0]
    assert not result.passed and "last step (export_openvino) was not measured" in result.reason


def test_gate_results_carry_the_difference_with_its_standard_error():
    from compresskit.bench.markdown import gate_rows

    report = _report(r_precision=0.45)
    report["candidates"][0]["metrics"]["r_precision"]["stderr"] = 0.03
    report["candidates"][1]["metrics"]["r_precision"]["stderr"] = 0.04
    result = evaluate_gates(report, parse_gates([{"metric": "r_precision", "goal": "max_degradation", "value": 0.03}],
                                                "g"))[0]
    assert result.difference == pytest.approx(-0.05) and result.difference_stderr == pytest.approx(0.05)
    assert not result.passed
    headers, rows = gate_rows([result])
    assert rows[0][headers.index("vs baseline")] == "-0.05 ± 0.05"
    assert rows[0][headers.index("observed")] == "0.45 ± 0.04"


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"gates": [{"metric": "latncy_ms_p50", "goal": "threshold", "value": 1}]}, "did you mean 'latency_ms_p50'"),
    ({"gates": [{"metric": "kid", "goal": "at_most", "value": 1}]}, "gates.0.goal"),
    ({"gates": [{"metric": "kid", "goal": "threshold", "value": "fast"}]}, "gates.0.value"),
    ({"gates": [{"metric": "kid", "goal": "threshold", "value": 1, "treshold": 2}]}, "unknown key 'gates.0.treshold'"),
    ({"gates": []}, "gates"),
    ("just text", "a gates file is a mapping"),
    ({"gates": [{"metric": "kid", "goal": "threshold", "value": math.inf}]}, "gates.0.value"),
])
def test_bad_gates_are_one_line_config_errors_naming_the_key(raw, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_gates(raw, "g.yaml")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_gate_cli_exit_codes_pass_fail_and_bad_file(tmp_path):
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps(_report(latency_ms_p50=4.0, kid=0.12)))
    passing, failing, broken = tmp_path / "pass.yaml", tmp_path / "fail.yaml", tmp_path / "bad.yaml"
    passing.write_text("gates:\n  - {metric: kid, goal: max_degradation, value: 0.05}\n")
    failing.write_text("gates:\n  - {metric: speedup_vs_baseline, goal: threshold, value: 2}\n")
    broken.write_text("gates:\n  - {metric: kid, goal: threshold}\n")
    ok = run_cli("gate", str(report_file), "--gates", str(passing))
    assert ok.returncode == 0 and "PASS" in ok.stdout and "verdict: pass" in ok.stdout
    bad = run_cli("gate", str(report_file), "--gates", str(failing))
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "speedup_vs_baseline" in bad.stdout
    wrong = run_cli("gate", str(report_file), "--gates", str(broken))
    assert wrong.returncode == 2 and "gates.0.value" in wrong.stderr and "Traceback" not in wrong.stderr
    none = run_cli("gate", str(report_file))
    assert none.returncode == 2 and "--gates" in none.stderr
    assert load_gates(passing)[0].metric == "kid"


def test_pareto_front_on_a_hand_made_set():
    from compresskit.bench.plots import pareto_front

    points = {"teacher": (10.0, 0.30), "int8": (2.0, 0.32), "onnx": (3.0, 0.29), "pruned": (5.0, 0.80),
              "slow_bad": (12.0, 0.40), "tie": (3.0, 0.29)}
    # int8 is fastest; onnx (and its exact tie) has the best KID; teacher, pruned and slow_bad are dominated
    assert pareto_front(points) == ["int8", "onnx", "tie"]
    assert pareto_front({"only": (1.0, 1.0)}) == ["only"] and pareto_front({}) == []
