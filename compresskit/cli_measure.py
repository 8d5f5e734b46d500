"""The release side of the command line: ``run`` (steps + measurement + gates), ``bench``, ``gate``, ``compare``,
``time`` (one artifact alone).

Exit codes: 0 done (and every gate passed), 1 a gate or a step failed, 2 bad input.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import ConfigError

out = Console()
err = Console(stderr=True)
# a user model folder's factory.json names code that loading it runs: only what the user names here (or in a
# recipe's input.factory, or their own trusted_factories file) runs (models.trust)
TrustFactory = Annotated[list[str] | None, typer.Option(
    "--trust-factory", metavar="MODULE[:CALLABLE]",
    help="Let model folders whose factory.json names this factory (or any in this package) run it; repeatable.")]


def trust_factories(names: list[str] | None) -> None:
    """Trust what ``--trust-factory`` names (checked to look like ``package.module[:callable]``)."""
    from .models.trust import trust_factories as trust  # lazy: CLI start-up

    trust(names or [], option="--trust-factory")


ACTIVITY = {"now": None}  # what a run is doing, for the one line an interruption prints (cli.main)


def _rich_table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        left = h in ("candidate", "backend", "gate", "goal", "result")
        # numbers are never cut: a narrow terminal wraps the names instead
        widest = max([len(row[i]) for row in rows] + [1])
        table.add_column(h, justify="left" if left else "right", overflow="fold",
                         min_width=min(widest, 14) if left else widest)
    for row in rows:
        table.add_row(*row, style="red" if row[-1].startswith("FAIL") else None)
    return table


def print_report(typed) -> None:
    """The report's headline table, gates and verdict on the terminal (every column: report.md)."""
    from .bench.markdown import TERMINAL_COLUMNS, gate_rows, table_rows  # lazy: CLI start-up

    report = typed.to_json()
    name = report.get("recipe", {}).get("name", "bench")
    if report.get("status") == "failed":
        out.print(f"[bold red]run {name} failed at step {report.get('failed_step')}[/]: {report.get('error')}")
    if report.get("candidates"):
        out.print(_rich_table(f"{name}: batch-1 latency at {report['headline_threads']} thread(s), img/s at the "
                              f"largest batch, quality on {report['quality_n']} {report['settings']['quality'].get('split', 'eval')} "
                              "captions (every column: report.md)",
                              *table_rows(report["candidates"], columns=TERMINAL_COLUMNS)))
        out.print(f"Pareto front (latency p50 vs KID): {', '.join(report['pareto']['front']) or '-'}")
    if report.get("gates"):
        out.print(_rich_table("gates", *gate_rows(report["gates"])))
    colour = {"pass": "green", "fail": "red"}.get(report.get("verdict"), "yellow")
    out.print(f"verdict: [bold {colour}]{report.get('verdict')}[/]")


def run_recipe(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder [default: runs/<recipe name>].")] = None,
    bench: Annotated[bool, typer.Option(help="Measure the artifacts and check the recipe's gates afterwards.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json (or run.json with --no-bench) on stdout.")] = False,
    nproc_per_node: Annotated[int, typer.Option(min=1, max=1024, help=(
        "Run with this many processes under torchrun: distill trains DDP over them, the rest runs on rank 0."))] = 1,
    wait: Annotated[bool, typer.Option("--wait", help="If another run holds the run folder, wait for it.")] = False,
    trust_factory: TrustFactory = None,
    store: Annotated[Path | None, typer.Option("--store", metavar="DIR", help=(
        "Share finished steps with other run folders through this artifact store [$COMPRESSKIT_STORE]."))] = None,
) -> None:
    """Take a generator through a recipe's passes (finished steps are reused), measure, and gate."""
    trust_factories(trust_factory)
    from .recipe import load_recipe  # lazy: CLI start-up
    from .runner import run  # lazy: CLI start-up
    from .train.distributed import launch_rank, launched_by_torchrun, torchrun  # lazy: CLI start-up

    parsed = load_recipe(recipe)
    folder = out_dir or Path("runs") / parsed.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; give a folder for the run (it is created if missing)")
    if nproc_per_node > 1 and not launched_by_torchrun():
        torchrun(nproc_per_node, ["run", str(recipe), "--out", str(folder), *([] if bench else ["--no-bench"]),
                                  *(["--json"] if as_json else []), *(["--wait"] if wait else []),
                                  *(["--store", str(store)] if store is not None else [])])
        return
    if launch_rank() != 0:  # a torchrun follower: its share of the steps, then done
        run(parsed, folder, store=store)
        return
    _run_and_print(parsed, folder, bench, as_json, wait, store)


def _on_event(folder: Path):
    """The console's progress: one line a step, its log lines, the bench's phases (on stderr)."""
    def show(event) -> None:
        if event.kind == "start":
            ACTIVITY["now"] = f"step {event.step} ({event.name}) of {folder}"
            err.print(f"[bold]step {event.step}[/] {event.name} ({event.id}) ...")
        elif event.kind == "done":
            record = event.record
            how = "reused" if record.cached else f"{record.seconds:.1f} s"
            err.print(f"  {record.name}: {how} -> {record.path}")
            ACTIVITY["now"] = f"what follows step {event.step} ({event.name}) of {folder}: a step or the measurement"
        elif event.kind == "log":
            err.print(f"  [dim]{escape(event.message)}[/]")
    return show


def _run_and_print(parsed, folder: Path, bench: bool, as_json: bool, wait: bool, store: Path | None = None) -> None:
    from .api import raise_if_failed, run  # lazy: CLI start-up

    with contextlib.redirect_stdout(sys.stderr):  # libraries' own progress output (NNCF) stays off stdout
        report = run(parsed, folder, bench=bench, gate=False, progress=_on_event(folder), wait=wait,
                     store=store)
    ACTIVITY["now"] = None  # (not in a finally: an interruption's one line names what it stopped)
    if as_json:
        typer.echo((folder / ("report.json" if bench else "run.json")).read_text("utf-8"))
    else:
        table = Table(title=f"run {parsed.name}: {folder}", title_justify="left")
        for column in ("step", "pass", "status", "seconds", "artifact"):
            table.add_column(column)
        for r in report.steps:
            table.add_row(str(r["step"]), r["name"], r["status"], f"{r['seconds']:.1f}", Path(r["path"]).name)
        out.print(table)
        if bench:
            print_report(report)
            err.print(f"report: {folder / 'report.md'} (+ report.json, pareto.png, samples.png)")
    raise_if_failed(report)


def bench(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (compresskit run) to measure again.")],
    threads: Annotated[str | None, typer.Option(help="Comma-separated thread counts [recipe's, default 1,2].")] = None,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Captions of the scored split for quality [all].")] = None,
    split: Annotated[str | None, typer.Option(help="Score quality on eval (report, gate) or val (tune) [recipe's].")] = None,
    candidates: Annotated[str | None, typer.Option(help="Comma-separated step names to measure [all but sanitize].")] = None,
    gates: Annotated[Path | None, typer.Option(help="Gates YAML [the recipe's gates].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print report.json on stdout.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="If a run holds the run folder, wait for it.")] = False,
    trust_factory: TrustFactory = None,
) -> None:
    """Measure a run's artifacts (speed, memory, size, quality) against its baseline; rewrite its report."""
    trust_factories(trust_factory)
    from .api import measure, raise_if_failed  # lazy: CLI start-up

    if threads:
        try:
            counts = [int(t) for t in threads.split(",")]
        except ValueError:
            raise ConfigError(f"--threads takes comma-separated integers like 1,2; got {threads!r}") from None
    with contextlib.redirect_stdout(sys.stderr):
        report = measure(run_dir, threads=counts if threads else None, n=n, split=split,
                         candidates=candidates.split(",") if candidates else None, gates=gates,
                         progress=_on_event(run_dir), wait=wait)
    if as_json:
        typer.echo((run_dir / "report.json").read_text("utf-8"))
    else:
        print_report(report)
    raise_if_failed(report)


def gate(
    report_file: Annotated[Path, typer.Argument(help="A report.json (from compresskit run or bench).")],
    gates_file: Annotated[Path | None, typer.Option("--gates", help="Gates YAML [the gates in the report's recipe].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the gate results as JSON on stdout.")] = False,
) -> None:
    """Check a report against release gates: exit 0 if all pass, 1 if any fails, 2 for a bad gates file."""
    from .api import gate as check  # lazy: CLI start-up
    from .bench.markdown import gate_rows  # lazy: CLI start-up

    report = check(report_file, gates_file)
    if as_json:
        typer.echo(json.dumps({"verdict": report.verdict, "gates": [g.model_dump() for g in report.gates]}, indent=2))
    else:
        out.print(_rich_table(f"gates on {report_file}", *gate_rows([g.model_dump() for g in report.gates])))
        colour = "green" if report.verdict == "pass" else "red"
        out.print(f"verdict: [bold {colour}]{report.verdict}[/]")
    if report.verdict == "fail":
        raise typer.Exit(1)


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders with a report.json.")],
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="Folder for compare.md/json, pareto.png, samples.png, report.html.")] = Path("runs/compare"),
) -> None:
    """One table, one Pareto plot, one sample grid and a self-contained report.html across runs."""
    from .bench.compare import compare as run_compare  # lazy: CLI start-up
    from .bench.markdown import TERMINAL_COLUMNS, table_rows  # lazy: CLI start-up

    result = run_compare(run_dirs, out_dir)
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    out.print(_rich_table("comparison (every column: compare.md / report.html)",
                          *table_rows(result["candidates"], label=lambda c: c["label"], columns=TERMINAL_COLUMNS)))
    out.print(f"Pareto front: {', '.join(result['pareto']['front']) or '-'}")
    err.print(f"wrote {out_dir / 'report.html'} (+ compare.md, compare.json, pareto.png, samples.png)")


def time_artifact(
    artifact_dir: Annotated[Path, typer.Argument(help="An artifact folder (a run's artifacts/NN-step-id or baselines/...).")],
    threads: Annotated[int, typer.Option(min=1, max=1024, help="Inference threads.")] = 2,
    rounds: Annotated[int, typer.Option(min=1, max=10_000, help="Timed blocks (the harness's rounds).")] = 10,
    per_round: Annotated[int, typer.Option(min=1, max=10_000, help="Timed batch-1 calls per block.")] = 20,
    warmup: Annotated[int, typer.Option(min=0, max=1_000_000, help="Untimed calls first.")] = 20,
    precision: Annotated[str, typer.Option(help="OpenVINO inference precision: f32 or bf16.")] = "f32",
    crosscheck: Annotated[bool, typer.Option(help="Also time an OpenVINO IR with benchmark_app (same scenario).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")] = False,
    trust_factory: TrustFactory = None,
) -> None:
    """Time one artifact alone in a fresh process, deployed for batch-1 latency, in the harness's blocks."""
    trust_factories(trust_factory)
    from .api import time_artifact as time_one  # lazy: CLI start-up

    result = time_one(artifact_dir, threads=threads, rounds=rounds, per_round=per_round, warmup=warmup,
                      precision=precision, crosscheck=crosscheck, option_prefix="--")
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    line = (f"{Path(result['artifact']).name}: batch-1 p50 {result['latency_ms_p50']:.3f} ms, p90 "
            f"{result['latency_ms_p90']:.3f} ms ({result['n']} calls, {threads} threads)")
    if "benchmark_app_ms_p50" in result:
        line += (f"; benchmark_app p50 {result['benchmark_app_ms_p50']:.3f} ms (ours / theirs "
                 f"{result['latency_ms_p50'] / result['benchmark_app_ms_p50']:.2f}); the per-call dict API "
                 f"{result['per_call_dict_ms_p50']:.3f} ms")
    out.print(line)


def register(app: typer.Typer) -> None:
    app.command("time")(time_artifact)
    app.command("run")(run_recipe)
    app.command()(bench)
    app.command()(gate)
    app.command()(compare)
