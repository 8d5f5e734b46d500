from __future__ import annotations

import pytest

from compresskit.bench.frontier import frontier_line, quality_frontier


def _entry(name: str, ms: float, r: float, kid: float, diversity: float, role: str = "candidate") -> dict:
    figures = {"latency_ms_p50": ms, "r_precision": r, "kid": kid, "diversity": diversity}
    return {"name": name, "role": role, "metrics": {k: {"value": v} for k, v in figures.items()}}


def test_the_frontier_is_the_fastest_inside_the_quality_budget_over_the_plain_int8_export():
    entries = [_entry("baseline", 40.0, 0.73, 0.20, 0.30, "baseline"),
               _entry("teacher_int8", 4.0, 0.72, 0.21, 0.30, "reference"),
               _entry("wide", 2.0, 0.705, 0.229, 0.28),      # inside: -2.5 points, +14.5% KID, 93% diversity
               _entry("slim", 0.5, 0.60, 0.40, 0.29),        # fast, but far outside
               _entry("blurry", 1.0, 0.72, 0.21, 0.25)]      # diversity below 90%
    frontier = quality_frontier(entries)
    assert frontier["fastest_inside"] == "wide" and frontier["speedup_vs_teacher_int8"] == pytest.approx(2.0)
    assert {p["name"]: p["inside"] for p in frontier["points"]} == {
        "baseline": True, "teacher_int8": True, "wide": True, "slim": False, "blurry": False}
    assert "2.00x over teacher_int8" in frontier_line(frontier)


def test_when_only_the_plain_export_keeps_quality_the_frontier_is_one():
    entries = [_entry("baseline", 40.0, 0.73, 0.20, 0.30, "baseline"), _entry("teacher_int8", 4.0, 0.727, 0.21, 0.3),
               _entry("final", 0.6, 0.56, 0.42, 0.3)]
    assert quality_frontier(entries)["speedup_vs_teacher_int8"] == pytest.approx(1.0)


def test_a_report_without_a_scored_baseline_has_no_frontier():
    entries = [{"name": "baseline", "metrics": {"latency_ms_p50": {"value": 1.0}}}]
    assert quality_frontier(entries) is None and "not measured" in frontier_line(None)
