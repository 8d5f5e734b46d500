"""The quality-held frontier: the fastest measured artifact that keeps the teacher's quality.

The quality budget (the edge recipe's quality gates, fixed): text alignment (R-precision; attribute accuracy on
shapes) at most ``alignment_drop`` below the teacher's, KID at most ``kid_increase`` above it (relative), and
diversity at least ``diversity_keep`` of it, each against the baseline (the teacher in torch) of the same report.
The frontier figure is the teacher's plain INT8 export's batch-1 p50 over the fastest in-budget candidate's, both
from the same run (1.0x when the plain export is the fastest inside, below 1 when only the torch teacher is).
Only candidates whose quality was scored count; the teacher and its exports count as points too.
"""

from __future__ import annotations

from pathlib import Path

from ..cache import atomic_file

ALIGNMENT_DROP, KID_INCREASE, DIVERSITY_KEEP = 0.03, 0.15, 0.90
REFERENCE = "teacher_int8"
LATENCY = "latency_ms_p50"


def _value(entry: dict, name: str) -> float | None:
    record = entry.get("metrics", {}).get(name)
    return record.get("value") if isinstance(record, dict) else None


def quality_frontier(entries: list[dict]) -> dict | None:
    """The frontier section of a report (None without a scored baseline)."""
    if not entries:
        return None
    base = entries[0]
    align = "r_precision" if _value(base, "r_precision") is not None else "attr_accuracy"
    limits = {align: _value(base, align), "kid": _value(base, "kid"), "diversity": _value(base, "diversity")}
    if any(v is None for v in limits.values()):
        return None
    budget = {align: {"min": limits[align] - ALIGNMENT_DROP}, "kid": {"max": limits["kid"] * (1 + KID_INCREASE)},
              "diversity": {"min": limits["diversity"] * DIVERSITY_KEEP}}
    points = []
    for e in entries:
        figures = {name: _value(e, name) for name in (LATENCY, align, "kid", "diversity")}
        if any(v is None for v in figures.values()):
            continue
        inside = (figures[align] >= budget[align]["min"] and figures["kid"] <= budget["kid"]["max"]
                  and figures["diversity"] >= budget["diversity"]["min"])
        points.append({"name": e["name"], "role": e.get("role", "candidate"), **figures, "inside": inside})
    reference = next((p for p in points if p["name"] == REFERENCE), None)
    inside = [p for p in points if p["inside"]]
    fastest = min(inside, key=lambda p: p[LATENCY]) if inside else None
    speedup = reference[LATENCY] / fastest[LATENCY] if reference and fastest else None
    return {"alignment_metric": align, "budget": budget, "reference": REFERENCE, "points": points,
            "fastest_inside": fastest["name"] if fastest else None, "speedup_vs_teacher_int8": speedup,
            "how": f"fastest candidate with {align} >= teacher - {ALIGNMENT_DROP}, KID <= teacher x "
                   f"{1 + KID_INCREASE:g}, diversity >= {DIVERSITY_KEEP:g} x teacher; {REFERENCE} p50 / its p50"}


def frontier_line(frontier: dict | None) -> str:
    if not frontier:
        return "Quality-held frontier: not measured (the baseline's quality was not scored)."
    if frontier["fastest_inside"] is None:
        return "Quality-held frontier: no measured artifact keeps the teacher's quality."
    speedup = frontier["speedup_vs_teacher_int8"]
    ratio = f"{speedup:.2f}x over {frontier['reference']}" if speedup else f"({frontier['reference']} not timed)"
    return f"Quality-held frontier: **{ratio}** ({frontier['fastest_inside']}; {frontier['how']})."


def frontier_plot(frontier: dict, path: Path, title: str) -> Path:
    """Latency against text alignment and against KID for every scored point, the budget shaded, references
    hollow, points inside the budget green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    align = frontier["alignment_metric"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for ax, (name, bound) in zip(axes, ((align, "min"), ("kid", "max"))):
        limit = frontier["budget"][name][bound]
        values = [p[name] for p in frontier["points"]] + [limit]
        low, high = min(values), max(values)
        pad = (high - low) * 0.15 or 0.05
        if bound == "min":
            ax.axhspan(limit, high + pad, color="tab:green", alpha=0.1, label="quality budget")
        else:
            ax.axhspan(low - pad, limit, color="tab:green", alpha=0.1, label="quality budget")
        for p in frontier["points"]:
            colour = "tab:green" if p["inside"] else "tab:red"
            if p["role"] != "candidate":
                ax.scatter([p[LATENCY]], [p[name]], s=55, marker="s", facecolors="none", edgecolors=colour, zorder=3)
            else:
                ax.scatter([p[LATENCY]], [p[name]], s=45, color=colour, zorder=3)
            ax.annotate(p["name"], (p[LATENCY], p[name]), textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("batch-1 latency p50 (ms, log scale)")
        ax.set_ylabel(f"{name} ({'higher' if bound == 'min' else 'lower'} is better)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
