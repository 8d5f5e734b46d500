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

``candidate`` names a report candidate (a step's pass name, ``final`` = the last step, or ``baseline``);
``threads`` picks a speed figure measured at that thread count (default: the report's headline threads).
Fail closed: a metric the report lacks, or a NaN, fails its gate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config_errors import read_yaml, validation_message
from ..errors import ConfigError
from .schema import METRICS, SPEED_METRICS

GOALS = ("threshold", "min_improvement", "percent_min_improvement", "max_degradation", "percent_max_degradation")


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str
    goal: Literal[GOALS]  # type: ignore[valid-type]
    value: float = Field(allow_inf_nan=False, ge=-1e15, le=1e15)
    candidate: str = "final"
    threads: int | None = Field(None, ge=1, le=1024)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in METRICS:
            import difflib

            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(METRICS)}"
            raise ValueError(f"unknown metric {name!r}; {hint}")
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


def _find(report: dict, candidate: str) -> dict | None:
    candidates = report.get("candidates", [])
    if candidate == "final":
        return next((c for c in candidates if c.get("final")), None)
    return next((c for c in candidates if c["name"] == candidate), None)


def _observed(entry: dict | None, metric: str, threads: int | None) -> float | None:
    if entry is None:
        return None
    metrics = entry.get("metrics", {})
    if threads is not None and metric in SPEED_METRICS:
        metrics = entry.get("by_threads", {}).get(str(threads), {})
    record = metrics.get(metric)
    value = record.get("value") if isinstance(record, dict) else None
    if not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


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


def evaluate_gates(report: dict, gates: list[GateSpec]) -> list[dict]:
    """One result per gate: observed, baseline, resolved threshold, passed, and why when it failed."""
    results = []
    for gate in gates:
        higher = METRICS[gate.metric].direction == "higher"
        threads = gate.threads
        observed = _observed(_find(report, gate.candidate), gate.metric, threads)
        baseline = _observed(_find(report, "baseline"), gate.metric, threads)
        threshold = resolve_threshold(gate.goal, gate.value, baseline, higher)
        reason = None
        if _find(report, gate.candidate) is None:
            reason = f"no candidate {gate.candidate!r} in the report"
        elif observed is None:
            reason = f"{gate.candidate} has no {gate.metric} (missing or NaN)"
        elif threshold is None:
            reason = f"baseline has no {gate.metric} to compare with"
        passed = reason is None and (observed >= threshold if higher else observed <= threshold)
        results.append({**gate.model_dump(), "direction": "higher" if higher else "lower", "observed": observed,
                        "baseline": baseline, "threshold": threshold, "passed": passed, "reason": reason})
    return results


def verdict(results: list[dict]) -> str:
    if not results:
        return "no gates"
    return "pass" if all(r["passed"] for r in results) else "fail"
