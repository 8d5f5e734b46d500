"""The search's output: the Pareto front as a report (``search.md``, ``search.json``), one plot of latency against
each quality figure with the teacher and its plain INT8 export marked (``front.png``), every front member's recipe
ready for ``compresskit run`` (``front/<space>-trial-NNNN.yaml``: scored on eval, ``search.full`` applied), and
``compare``'s HTML and sample grid over the front's trial runs (``compare/``).

The trials were scored on val; the front's recipes are what a user re-runs in full and judges on eval.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..bench.schema import known_metrics
from ..cache import atomic_file
from ..errors import ArtifactError
from .space import SearchSpace
from .study import Summary

SPEED_METRICS = ("latency_ms_p50", "speedup_vs_teacher_int8", "speedup_vs_baseline")
QUALITY_METRICS = ("r_precision", "kid", "fid", "diversity", "attr_accuracy")
REFERENCES = {"baseline": "teacher (torch)", "teacher_int8": "teacher, plain INT8"}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def quality_axes(space: SearchSpace, summary: Summary) -> list[str]:
    """The quality figures the plots show: the objectives' first, then any other the trials measured."""
    chosen = [o.metric for o in space.settings.objectives if o.metric not in SPEED_METRICS]
    seen = {m for t in summary.trials for m in t["figures"].get("final", {})}
    return list(dict.fromkeys([*chosen, *[m for m in QUALITY_METRICS if m in seen]]))


def front_plot(summary: Summary, axes: list[str], path: Path, title: str) -> Path | None:
    """Latency (final, batch 1) against each quality figure: every finished trial (front red, infeasible grey
    crosses), the teacher and its plain INT8 export as hollow squares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [t for t in summary.trials if t["state"] == "complete" and "latency_ms_p50" in t["figures"].get("final", {})]
    if not done or not axes:
        return None
    front = {t["number"] for t in summary.front}
    refs = next((t["figures"] for t in done if all(r in t["figures"] for r in REFERENCES)), {})
    fig, plots = plt.subplots(1, len(axes), figsize=(5.2 * len(axes), 4.2), dpi=110, squeeze=False)
    for ax, metric in zip(plots[0], axes):
        for t in done:
            final = t["figures"]["final"]
            if metric not in final:
                continue
            x, y = final["latency_ms_p50"], final[metric]
            if not t["feasible"]:
                ax.scatter([x], [y], marker="x", color="grey", zorder=2)
            else:
                ax.scatter([x], [y], s=40, color="tab:red" if t["number"] in front else "tab:blue", zorder=3)
            ax.annotate(str(t["number"]), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        for ref, label in REFERENCES.items():
            figures = refs.get(ref, {})
            if "latency_ms_p50" in figures and metric in figures:
                ax.scatter([figures["latency_ms_p50"]], [figures[metric]], s=60, marker="s", facecolors="none",
                           edgecolors="black", zorder=4)
                ax.annotate(label, (figures["latency_ms_p50"], figures[metric]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7)
            elif "latency_ms_p50" in figures:  # timed, its quality not scored by the space's bench: its latency
                ax.axvline(figures["latency_ms_p50"], color="black", linestyle="--", linewidth=0.8)
                ax.annotate(label, (figures["latency_ms_p50"], 0.02), xycoords=("data", "axes fraction"),
                            textcoords="offset points", xytext=(3, 0), fontsize=7, rotation=90)
        better = known_metrics()[metric].direction
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("batch-1 latency p50 (ms, log scale, lower is better)")
        ax.set_ylabel(f"{metric} on val ({better} is better)")
        ax.grid(alpha=0.3)
    plots[0][0].scatter([], [], color="tab:red", label="front (feasible)")
    plots[0][0].scatter([], [], color="tab:blue", label="feasible")
    plots[0][0].scatter([], [], marker="x", color="grey", label="misses a gate")
    plots[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _shown(param, stored) -> str:
    """A parameter's value in the table: the value itself, or ``#i`` for a choice of a whole mapping."""
    value = param.value_of(stored)
    return f"#{stored}" if isinstance(value, (dict, list)) else _fmt(value)


def _table(space: SearchSpace, summary: Summary, axes: list[str]) -> list[str]:
    objectives = [o.label for o in space.settings.objectives]
    params = [p.name for p in space.params]
    headers = ["trial", "state", "front", "feasible", *objectives, "latency_ms_p50", *[a for a in axes if a not in objectives],
               *params, "failed gates", "s"]
    rows = []
    front = {t["number"] for t in summary.front}
    by_name = {p.name: p for p in space.params}
    for t in summary.trials:
        final = t["figures"].get("final", {})
        values = t["values"] or [None] * len(objectives)
        shown = [_shown(by_name[n], t["params"][n]) if n in t["params"] else "-" for n in params]
        rows.append([str(t["number"]), t["state"], "yes" if t["number"] in front else "", "yes" if t["feasible"] else "",
                     *[_fmt(v) for v in values], _fmt(final.get("latency_ms_p50")),
                     *[_fmt(final.get(a)) for a in axes if a not in objectives], *shown,
                     ", ".join(t["failed_gates"]) or "", _fmt(t["seconds"])])
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *["| " + " | ".join(r) + " |" for r in rows]]


def write_front(space: SearchSpace, summary: Summary, out: str | Path) -> dict:
    """Write the front's report, plot, recipes and comparison into ``out``; returns search.json's content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    axes = quality_axes(space, summary)
    recipes = []
    for member in summary.front:
        values = {p.name: p.value_of(member["params"][p.name]) for p in space.params}
        name = f"{space.name}-trial-{member['number']:04d}"
        path = out / "front" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(f"# trial {member['number']} of search {summary.study} (val: "
                           + ", ".join(f"{o} {_fmt(v)}" for o, v in zip(summary.objectives, member["values"] or []))
                           + "); re-run in full and scored on eval:\n# compresskit run " + str(path) + "\n"
                           + yaml.safe_dump(space.front_recipe(values, name), sort_keys=False), encoding="utf-8")
        recipes.append(str(path))
    plot = front_plot(summary, axes, out / "front.png",
                      f"search {summary.study}: {summary.complete} finished trials, front of {len(summary.front)}")
    comparison, why = None, None
    runs = [Path(m["run_dir"]) for m in summary.front if m.get("run_dir") and Path(m["run_dir"], "report.json").is_file()]
    if runs:
        from ..bench.compare import compare  # matplotlib and the report schema: only when there is a front

        try:
            compare(runs, out / "compare")
            comparison = str(out / "compare" / "report.html")
        except ArtifactError as exc:
            why = str(exc)
    result = {**summary.to_json(), "front_recipes": recipes, "plot": str(plot) if plot else None,
              "compare": comparison, "compare_error": why, "quality_axes": axes}
    with atomic_file(out / "search.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    md = [f"# search {summary.study}", "",
          f"{summary.complete} finished ({summary.feasible} feasible), {summary.failed} failed, {summary.running} "
          f"running; storage {summary.storage}. Objectives on **val**: "
          + ", ".join(f"{o} ({d})" for o, d in zip(summary.objectives, summary.directions)) + ".", "",
          *_table(space, summary, axes), "",
          "Front recipes (re-run in full and scored on eval with `compresskit run`):", "",
          *[f"- `{r}`" for r in recipes], "", *(["![front](front.png)", ""] if plot else []),
          *([f"Comparison of the front's trial runs: `{comparison}`", ""] if comparison else []),
          *([f"No comparison: {why}", ""] if why else [])]
    with atomic_file(out / "search.md") as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    return result
