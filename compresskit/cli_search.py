"""``compresskit search SPACE.yaml``: a multi-objective recipe search (compresskit.recipe_search) on the terminal.

Exit codes: 0 the search ended with a front, 1 no trial finished, 2 bad input (the space, the storage, the study).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)


def _status_line(summary, started: float) -> str:
    best = []
    for i, (name, direction) in enumerate(zip(summary.objectives, summary.directions)):
        values = [t["values"][i] for t in summary.trials if t["feasible"] and t["values"]]
        if values:
            best.append(f"{name} {(max if direction == 'maximize' else min)(values):.4g}")
    return (f"[bold]{summary.study}[/]: {summary.complete} done ({summary.feasible} feasible), {summary.running} "
            f"running, {summary.failed} failed · best feasible: {', '.join(best) or '-'} · front "
            f"{len(summary.front)} · {time.monotonic() - started:.0f} s")


def _trial_line(t: dict, objectives: list[str]) -> str:
    if t["state"] == "fail":
        return f"trial {t['number']} [red]failed[/]: {escape(t['error'] or 'killed or stopped (no heartbeat)')}"
    values = ", ".join(f"{o} {v:.4g}" for o, v in zip(objectives, t["values"] or []))
    gates = "all gates pass" if t["feasible"] else "misses " + ", ".join(t["failed_gates"])
    return f"trial {t['number']}: {values}; {gates} ({t['seconds']} s)"


def _front_table(summary) -> Table:
    table = Table(title=f"Pareto front of {summary.study} (val)", title_justify="left")
    for header in ["trial", *summary.objectives, "latency ms", "run folder"]:
        table.add_column(header, justify="left" if header in ("trial", "run folder") else "right")
    for member in summary.front:
        latency = member["figures"].get("final", {}).get("latency_ms_p50")
        table.add_row(str(member["number"]), *[f"{v:.4g}" for v in member["values"]],
                      "-" if latency is None else f"{latency:.3g}", member["run_dir"] or "-")
    return table


def search(
    space_file: Annotated[Path, typer.Argument(metavar="SPACE", help="Search space YAML: a recipe with ranges/choices.")],
    trials: Annotated[int | None, typer.Option(min=1, help="Finished trials to stop at, all workers together "
                                                           "(default: the space's search.trials).")] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="Seconds after which no new trial starts.")] = None,
    storage: Annotated[str | None, typer.Option(help="Study storage: sqlite:///PATH or postgresql://USER@HOST/DB "
                                                     "(workers on many machines share one; default OUT/study.db).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name in the storage (default: the space's name).")] = None,
    jobs: Annotated[int, typer.Option(min=1, max=64, help="Worker processes here: they build in parallel and "
                                                          "time one at a time.")] = 1,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Search folder: trials, artifact store, front "
                                                               "(default: runs/search-NAME).")] = None,
    store: Annotated[Path | None, typer.Option(help="Artifact store the trials share (default OUT/store); a shared "
                                                    "folder lets machines reuse each other's steps.")] = None,
    heartbeat: Annotated[int, typer.Option(min=1, max=3600, help="Seconds between a running trial's heartbeats; "
                                                                 "one silent for 3 is marked failed.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print search.json on stdout.")] = False,
) -> None:
    """Search a space of recipes for the best speed/quality trade-offs on this CPU (Optuna), write the front."""
    from .recipe_search import load_space, write_front  # lazy: CLI start-up
    from .recipe_search import search as run_search

    space = load_space(space_file)
    folder = out_dir or Path("runs") / f"search-{space.name}"
    started = time.monotonic()
    err.print(f"search {space.name}: {len(space.params)} searched values, objectives "
              + ", ".join(o.label for o in space.settings.objectives) + f" on val; folder {folder}")
    for line in space.describe():
        err.print(f"  {line}")
    with Live(console=err, refresh_per_second=2, transient=False) as live:
        said: set[int] = set()

        def show(summary) -> None:
            for t in summary.trials:  # one line a trial as it ends
                if t["state"] in ("complete", "fail") and t["number"] not in said:
                    said.add(t["number"])
                    live.console.print(_trial_line(t, summary.objectives))
            live.update(_status_line(summary, started))

        def event(e) -> None:
            if e.kind == "start":
                live.console.print(f"  trial step {e.step} {e.name}")

        summary = run_search(space, trials=trials, timeout=timeout, storage=storage, study=study, jobs=jobs,
                             out=folder, store=store, heartbeat=heartbeat, progress=show, on_event=event)
        show(summary)
    result = write_front(space, summary, folder)
    if as_json:
        out.print_json(json.dumps(result, default=str))
    else:
        out.print(_front_table(summary))
        out.print(f"front recipes: {', '.join(result['front_recipes']) or '-'}")
        out.print(f"report: {folder / 'search.md'}" + (f", comparison: {result['compare']}" if result["compare"] else ""))
    if summary.complete == 0:
        err.print("[red]no trial finished[/]: see the trials' run.log files under " + str(folder / "trials"))
        raise typer.Exit(1)
