"""``compresskit compare RUN_DIR... -o DIR``: several runs' reports side by side.

Writes into DIR: ``compare.json`` (every candidate of every run, labelled ``run/candidate``; a baseline
shared by several runs, same artifact id, appears once), ``compare.md``, ``pareto.png`` (one front across
runs), ``samples.png`` (every run's sample rows; the same captions and noise when the runs share their
data and seed) and a self-contained ``report.html`` (tables, plot and grid inline; opens offline).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from ..cache import atomic_file
from ..errors import ArtifactError
from ..hardware import fingerprint
from .markdown import gate_rows, machine_line, table_rows
from .plots import pareto_front, pareto_plot, pareto_points, samples_grid
from .report import SAMPLES_NPZ
from .schema import Report, load_report

COMPARE_JSON, COMPARE_MD, REPORT_HTML = "compare.json", "compare.md", "report.html"


def _run_label(report: dict, run_dir: Path) -> str:
    return report.get("recipe", {}).get("name") or Path(run_dir).name


def merged_candidates(reports: list[tuple[str, dict]]) -> list[dict]:
    """Every candidate labelled ``run/name``; a baseline or reference seen before is not repeated."""
    seen_baselines: set[tuple] = set()
    merged = []
    for label, report in reports:
        for c in report.get("candidates", []):
            if c["role"] != "candidate":  # the teacher and its plain exports: once across runs that share them
                key = (c["artifact_id"], c.get("precision", "f32"))
                if key in seen_baselines:
                    continue
                seen_baselines.add(key)
            merged.append({**c, "label": f"{label}/{c['name']}", "run": label})
    return merged


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def machine_warnings(reports: list[tuple[str, dict]]) -> list[str]:
    """One line when the runs were measured on different CPUs (or ISA caps): their latencies do not compare."""
    kinds: dict[tuple, list[str]] = {}
    for label, report in reports:
        kinds.setdefault(fingerprint(report.get("environment", {})), []).append(label)
    if len(kinds) < 2:
        return []
    described = "; ".join(f"{', '.join(labels)} on {key[0]} ({key[1]}{', capped' if key[2] else ''})"
                          for key, labels in kinds.items())
    return [f"these runs were measured on different CPUs ({described}): compare each run's ratios, not latencies "
            f"across runs"]


def _html(reports: list[tuple[str, dict]], merged: list[dict], front: list[str], out_dir: Path) -> str:
    headers, rows = table_rows(merged, label=lambda c: c["label"])
    threads = ", ".join(f"{label} ({report.get('headline_threads', '?')})" for label, report in reports)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>compresskit comparison</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        "<h1>compresskit comparison</h1>",
        *[f"<p><b>Warning:</b> {html.escape(w)}</p>" for w in machine_warnings(reports)],
        "<h2>Machines</h2><ul>" + "".join(f"<li>{html.escape(label)}: {html.escape(machine_line(r.get('environment', {})))}</li>"
                                          for label, r in reports) + "</ul>",
        f"<p>Runs (headline threads): {html.escape(threads)}. Speed ratios compare within a run (each run "
        "measures its own baselines with its candidates): <i>vs torch</i> over the teacher in torch eager fp32, "
        "<i>vs export</i> over the teacher merely exported to the candidate's runtime, <i>vs int8</i> over the "
        "teacher's plain NNCF INT8 export.</p>",
        "<h2>Candidates</h2>", _html_table(headers, rows),
        f"<h2>Pareto front (latency p50 vs KID)</h2><p>On the front: {html.escape(', '.join(front) or 'none')}</p>",
        f"<img alt='pareto' src='{_png_data_uri(out_dir / 'pareto.png')}'>",
        "<h2>Samples</h2>", f"<img alt='samples' src='{_png_data_uri(out_dir / 'samples.png')}'>",
    ]
    for label, report in reports:
        if report.get("gates"):
            h, r = gate_rows(report["gates"])
            parts += [f"<h2>Gates of {html.escape(label)}: {html.escape(report.get('verdict', ''))}</h2>", _html_table(h, r)]
        if report.get("status") == "failed":
            parts.append(f"<p><b>{html.escape(label)} failed at step {report.get('failed_step')}</b>: "
                         f"{html.escape(str(report.get('error')))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def compare(run_dirs: list[Path], out_dir: Path) -> dict:
    """Write the comparison files into ``out_dir``; returns compare.json's content."""
    if not run_dirs:
        raise ArtifactError("give at least one run folder to compare")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ArtifactError(f"-o {out_dir} is a file; give a folder for the comparison (it is created if missing)")
    loaded: list[Report] = [load_report(d) for d in run_dirs]  # typed and checked; rendered from their JSON form
    reports = [(_run_label(r.to_json(), d), r.to_json()) for r, d in zip(loaded, run_dirs)]
    labels = [label for label, _ in reports]
    if len(set(labels)) != len(labels):  # two runs of one recipe: fall back to folder names
        reports = [(Path(d).name, r) for d, (_, r) in zip(run_dirs, reports)]
    merged = merged_candidates(reports)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create {out_dir} ({exc.strerror or exc}); choose a folder you can write") from None
    points = pareto_points(merged, label=lambda c: c["label"])
    pareto_plot(points, out_dir / "pareto.png", "latency vs KID across runs",
                references={c["label"] for c in merged if c["role"] != "candidate"})
    front = pareto_front(points)

    kept = {c["label"] for c in merged}  # a shared baseline's or reference's samples appear once, too
    samples, captions = {}, None
    for (label, _), run_dir in zip(reports, run_dirs):
        npz = Path(run_dir) / SAMPLES_NPZ
        if not npz.is_file():
            continue
        with np.load(npz, allow_pickle=False) as data:
            run_captions = [str(c) for c in data["captions"]]
            captions = captions or run_captions
            if run_captions != captions:
                continue  # a different caption list would break the grid's columns; its own report has it
            for name in data.files:
                if name != "captions" and f"{label}/{name}" in kept:
                    samples[f"{label}/{name}"] = data[name]
    if samples:
        samples_grid(samples, captions, out_dir / "samples.png")
    else:
        raise ArtifactError("none of the runs has samples.npz; re-measure them with `compresskit bench RUN_DIR`")

    result = {"runs": [{"label": label, "run_dir": str(d), "verdict": r.get("verdict"), "status": r.get("status")}
                       for (label, r), d in zip(reports, run_dirs)],
              "warnings": machine_warnings(reports),
              "candidates": merged, "pareto": {"x": "latency_ms_p50", "y": "kid", "front": front},
              "sample_captions": captions}
    headers, rows = table_rows(merged, label=lambda c: c["label"])
    md = ["# compresskit comparison", "", *[f"**Warning:** {w}\n" for w in result["warnings"]],
          *[f"- {label}: {machine_line(r.get('environment', {}))}" for label, r in reports], "",
          "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    md += ["", f"Pareto front: {', '.join(front) or 'none'}", "", "![pareto](pareto.png)", "", "![samples](samples.png)", ""]
    with atomic_file(out_dir / COMPARE_JSON) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    with atomic_file(out_dir / COMPARE_MD) as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    with atomic_file(out_dir / REPORT_HTML) as tmp:
        tmp.write_text(_html(reports, merged, front, out_dir), encoding="utf-8")
    return result
