"""Do the gates give the same verdict twice? Every gate across several benches of the same run (issue 44).

    for i in 1 2 3 4 5; do compresskit bench RUN && cp RUN/report.json benches/report-$i.json; done
    python benchmarks/gate_verdicts.py benches/report-*.json [--out verdicts.md]

Per gate: the verdict of each bench under the bench's rule (a speed-up whose 95% interval straddles its threshold
is timed again, ``bench.speed.remeasure`` times, then decided on its central value and marked marginal) and
under the rule before it (the first measurement's central value alone: ``first_measurement`` of a re-measured
figure), and under ``marginal: fail`` (a gate still straddling after its re-measures fails as not shown), and
each rule's flip rate: the share of bench pairs whose verdicts differ.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path


def _first_value(report: dict, gate: dict) -> float | None:
    """The figure the gate saw before any re-measure (the rule before: one measurement's central value)."""
    name = gate["candidate"]
    if name == "final" or name.startswith("final@"):
        final = next(c for c in report["candidates"] if c.get("final"))
        name = final["name"] + name[len("final"):]
    entry = next((c for c in report["candidates"] if c["name"] == name), None)
    if entry is None:
        return None
    metrics = entry["by_threads"].get(str(gate["threads"]), {}) if gate.get("threads") else entry["metrics"]
    record = metrics.get(gate["metric"]) or {}
    return (record.get("first_measurement") or {}).get("value", record.get("value"))


def _passes(value: float | None, gate: dict) -> bool:
    if value is None or gate.get("threshold") is None:
        return False
    return value >= gate["threshold"] if gate["direction"] == "higher" else value <= gate["threshold"]


def _flip_rate(verdicts: list[bool]) -> float:
    pairs = list(itertools.combinations(verdicts, 2))
    return sum(a != b for a, b in pairs) / len(pairs) if pairs else 0.0


def table(reports: list[dict]) -> str:
    rows = ["| gate | threshold | values (first measurement → after re-measures) | verdicts, rule before | flip rate "
            "| verdicts, bench's rule | marginal | flip rate | verdicts, marginal = fail | flip rate |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for index, gate in enumerate(reports[0]["gates"]):
        gates = [r["gates"][index] for r in reports]
        first = [_first_value(r, g) for r, g in zip(reports, gates)]
        before = [_passes(v, g) for v, g in zip(first, gates)]
        after = [g["passed"] for g in gates]
        strict = [g["passed"] and g.get("decided") != "marginal" for g in gates]
        values = ", ".join(("-" if v is None else f"{v:.3g}") + ("" if not g.get("remeasured") else
                           f"→{g['observed']:.3g}") for v, g in zip(first, gates))
        marginal = sum(g.get("decided") == "marginal" for g in gates)
        mark = lambda vs: " ".join("P" if v else "F" for v in vs)  # noqa: E731
        threads = f" @{gate['threads']}t" if gate.get("threads") else ""
        op = ">=" if gate["direction"] == "higher" else "<="
        threshold = "-" if gate.get("threshold") is None else f"{op} {gate['threshold']:.4g}"
        rows.append(f"| {gate['metric']}{threads} ({gate['candidate']}) | {threshold} | {values} | {mark(before)} | "
                    f"{_flip_rate(before):.0%} | {mark(after)} | {marginal} of {len(gates)} | {_flip_rate(after):.0%} | "
                    f"{mark(strict)} | {_flip_rate(strict):.0%} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    reports = [json.loads(path.read_text()) for path in args.reports]
    text = table(reports)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
