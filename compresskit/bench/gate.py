"""Release gates: metric goals resolved against the baseline measured in the same run.

    gates:                                  # in a gates YAML, or under the recipe's own ``gates:`` key
      - {metric: speedup_vs_baseline, goal: threshold, value: 2.0}
      - {metric: kid, goal: max_degradation, value: 0.05}
      - {metric: latency_ms_p50, goal: percent_min_improvement, value: 40, candidate: quantize_nncf, threads: 1}

Goal types (after Olive's metric goals); "better" follows the metric's direction (lower latency, higher
R-precision):

* ``threshold``: observed is at least as good as ``value``;
* ``min_improvement`` / ``percent_min_improvement``: observed beats the baseline by ``value`` (absolute, or
  percent of |baseline|);
* ``max_degradation`` / ``percent_max_degradation``: observed is worse than the baseline by at most ``value``.

``metric`` is a bench metric (``schema.METRICS``) or a figure a pass declares and reports (e.g.
``int8_mac_share`` of ``quantize_nncf``: gate it with ``candidate: quantize_nncf`` or ``final``).
``candidate`` names a report candidate: a step's pass name, ``final`` (always the recipe's last step,
whichever steps were measured), ``baseline`` (the teacher in torch) or a reference (``teacher_int8``...);
``threads`` picks a speed figure measured at that thread count (default: the report's headline threads).
Speed gates can name either kind of speedup: ``speedup_vs_baseline`` (over the teacher in torch) or
``speedup_vs_exported_teacher`` / ``speedup_vs_teacher_int8`` (over the teacher merely exported).
Fail closed: a metric the report lacks, a NaN or an infinity fails its gate. Each result carries the
observed difference from the baseline with its standard error where the metrics have one
(R-precision: binomial; KID: std over subsets), so a reader sees whether a gap is noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config_errors import read_yaml, validation_message
from ..errors import ConfigError
from ..lookup import unknown_name
from .schema import SPEED_METRICS, GateResult, Report, known_metrics

# the figures measured with a 95% interval (speedups: a bootstrap over the timed rounds), which a gate can find marginal
INTERVAL_METRICS = ("speedup_vs_baseline", "speedup_vs_exported_teacher", "speedup_vs_teacher_int8",
                    "e2e_speedup_vs_baseline")
GOALS = ("threshold", "min_improvement", "percent_min_improvement", "max_degradation", "percent_max_degradation")


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    goal: Literal[GOALS]  # type: ignore[valid-type]
    value: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)
    candidate: str = "final"
    threads: int | None = Field(None, ge=1, le=1024)
    # a speedup whose interval still straddles the threshold after its re-measures: decided on its central value
    # ("central"), or failed as not shown to pass ("fail": a release gate that passes only what it proved)
    marginal: Literal["central", "fail"] = "central"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in known_metrics():
            raise ValueError(unknown_name("metric", name, known_metrics()))
        return name


class GatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gates: list[GateSpec] = Field(min_length=1)


def parse_gates(raw: object, source: str) -> list[GateSpec]:
    if isinstance(raw, list):
        raw = {"gates": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a gates file is a mapping with a 'gates' list, got {type(raw).__name__}")
    try:
        return GatesFile.model_validate(raw).gates
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, GatesFile, source)) from None


def load_gates(path: Path) -> list[GateSpec]:
    return parse_gates(read_yaml(Path(path), "gates file"), str(path))


def _name(report: dict, candidate: str) -> str | None:
    """The candidate name a gate means: ``final`` is the last step, ``final@bf16`` its bf16 variant."""
    if candidate == "final" or candidate.startswith("final@"):
        final = next((c for c in report.get("candidates", []) if c.get("final")), None)
        return None if final is None else final["name"] + candidate[len("final"):]
    return candidate


def _find(report: dict, candidate: str) -> dict | None:
    """The report entry a gate names (see ``_name``)."""
    name = _name(report, candidate)
    return next((c for c in report.get("candidates", []) if c["name"] == name), None)


def _record(entry: dict | None, metric: str, threads: int | None) -> dict:
    if entry is None:
        return {}
    metrics = entry.get("metrics", {})
    if threads is not None and metric in SPEED_METRICS:
        metrics = entry.get("by_threads", {}).get(str(threads), {})
    record = metrics.get(metric)
    return record if isinstance(record, dict) else {}


def _finite(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _missing(report: dict, gate: GateSpec, entry: dict | None) -> str:
    if entry is None and gate.candidate == "final" and report.get("final_step"):
        return f"the recipe's last step ({report['final_step']}) was not measured; add it to bench.candidates"
    why = report.get("not_applicable", {}).get(_name(report, gate.candidate) or "")
    if entry is None and why:
        return f"{gate.candidate}: {why}"
    if entry is None:
        return f"no candidate {gate.candidate!r} in the report"
    return f"{gate.candidate} has no finite {gate.metric} (missing, NaN or infinite)"


def resolve_threshold(goal: str, value: float, baseline: float | None, higher_is_better: bool) -> float | None:
    """The figure the observed value must reach (>= if higher is better, <= if lower)."""
    if goal == "threshold":
        return value
    if baseline is None:
        return None
    sign = 1.0 if higher_is_better else -1.0
    amount = value * abs(baseline) / 100.0 if goal.startswith("percent_") else value
    if goal.endswith("min_improvement"):
        return baseline + sign * amount
    return baseline - sign * amount  # max_degradation: worse by at most ``amount``


def _decided(interval: list[float], threshold: float) -> str:
    """"clear" when the whole interval lies on one side of the threshold (another bench of the same artifacts
    would most likely give the same verdict), "marginal" when it straddles it (the verdict, taken on the central
    value, could flip on a re-run)."""
    low, high = interval
    return "marginal" if low < threshold < high else "clear"


def evaluate_gates(report: dict | Report, gates: list[GateSpec]) -> list[GateResult]:
    """One result per gate: observed, baseline, resolved threshold, passed, and why when it failed. A speedup's
    95% interval (``observed_interval``) rides along, with ``decided``: "clear" or "marginal" (see ``_decided``),
    and ``remeasured``: how many times the bench timed it again because it straddled (``marginal_speed_gates``);
    the verdict is the central value's: a clear interval gives the same verdict, and a marginal one, after its
    re-measures, is decided on its central value and says so."""
    if isinstance(report, Report):
        report = report.to_json()
    results = []
    for gate in gates:
        higher = known_metrics()[gate.metric].direction == "higher"
        entry = _find(report, gate.candidate)
        found = _record(entry, gate.metric, gate.threads)
        base = _record(_find(report, "baseline"), gate.metric, gate.threads)
        observed, baseline = _finite(found.get("value")), _finite(base.get("value"))
        threshold = resolve_threshold(gate.goal, gate.value, baseline, higher)
        reason = None
        if observed is None:
            reason = _missing(report, gate, entry)
        elif threshold is None or not math.isfinite(threshold):
            reason = f"baseline has no finite {gate.metric} to compare with"
        passed = reason is None and (observed >= threshold if higher else observed <= threshold)
        interval = found.get("interval") if reason is None else None
        decided = _decided(interval, threshold) if interval else None
        if passed and decided == "marginal" and gate.marginal == "fail":
            passed = False
            low, high = interval
            reason = (f"not shown: its 95% interval [{low:.4g}, {high:.4g}] still straddles {threshold:g} (the gate's "
                      "marginal rule is fail)")
        stderrs = [_finite(found.get("stderr")), _finite(base.get("stderr"))]
        difference = observed - baseline if observed is not None and baseline is not None else None
        difference_stderr = (math.hypot(*stderrs) if difference is not None and None not in stderrs else None)
        results.append(GateResult(**gate.model_dump(), direction="higher" if higher else "lower", observed=observed,
                                  observed_stderr=stderrs[0], baseline=baseline, difference=difference,
                                  difference_stderr=difference_stderr, threshold=threshold, passed=passed,
                                  reason=reason, observed_interval=interval,
                                  decided=decided,
                                  remeasured=found.get("remeasured", 0) if interval else None))
    return results


def marginal_speed_gates(report: dict, gates: list[GateSpec], headline: int,
                         every: bool = False) -> list[tuple[str, str, int]]:
    """(candidate name, speedup metric, threads) of every gate whose speedup interval straddles its threshold in
    ``report`` (only its candidates' speed records are needed): what the bench times again before deciding;
    ``every``: of every gate with an interval, straddling or not."""
    found = []
    for gate, result in zip(gates, evaluate_gates(report, gates)):
        if result.decided == "marginal" or (every and result.decided == "clear"):
            key = (_name(report, gate.candidate), gate.metric, gate.threads or headline)
            if key not in found:
                found.append(key)
    return found


def verdict(results: list[GateResult]) -> str:
    """"pass" when every gate passed, "fail" when one did not, "no gates" when there were none."""
    if not results:
        return "no gates"
    return "pass" if all(r.passed for r in results) else "fail"
