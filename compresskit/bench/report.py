"""Measure a run's artifacts and write its report: ``report.json``, ``report.md``, ``pareto.png``, ``samples.png``.

    report = bench_run(run_dir)              # after ``compresskit run``; also ``compresskit bench RUN_DIR``

The baseline is the recipe's input generator in torch eager fp32; the references are that teacher merely
exported (ONNX, OpenVINO fp32, plain NNCF INT8: ``baselines.py``); the candidates are the steps'
artifacts (by default every step but ``sanitize``, whose output runs exactly like its input), plus
``NAME@bf16`` variants where ``bench.speed.bf16`` asks. Speed is measured with each candidate isolated
in its own worker process (``measure.py``, ``harness.py``), quality on each deployed artifact
(``quality.py``), and the recipe's gates are resolved against the same-run baseline (``gate.py``).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..artifact import load_artifact
from ..cache import atomic_file
from ..diskspace import disk_full_said
from ..errors import ArtifactError, ConfigError
from ..hardware import machine_info, native_bf16
from ..lock import building, measuring, run_lock
from ..metrics.evaluate import eval_set
from ..passes.store import ArtifactStore
from ..registry import pass_class
from ..runtimes import OPENVINO_XML
from ..threads import torch_threads
from .baselines import BASELINES_DIR, teacher_exports
from .crosscheck import benchmark_app_p50, static_shapes
from .frontier import frontier_plot, quality_frontier
from .gate import INTERVAL_METRICS, GateSpec, evaluate_gates, marginal_speed_gates, parse_gates, verdict
from .harness import time_alone
from .markdown import report_markdown
from .measure import (
    Candidate,
    chosen_names,
    measure_compute_rates,
    measure_footprint,
    measure_speed,
    model_cost,
    size_mb,
)
from .names import BF16_SUFFIX, step_names
from .plots import pareto_front, pareto_plot, pareto_points, samples_grid
from .quality import measure_quality
from .schema import REPORT_JSON, SCHEMA_VERSION, Report, known_metrics, metric, validated_report
from .settings import BenchSettings, SpeedSettings

REPORT_MD, PARETO_PNG, SAMPLES_PNG, SAMPLES_NPZ, FRONTIER_PNG = (
    "report.md", "pareto.png", "samples.png", "samples.npz", "frontier.png")
EMOJI_SAMPLE_CAPTIONS = ["red apple", "cat face", "red heart", "sun", "flag: Japan", "automobile",
                         "red paper lantern", "woman running"]
NOT_MEASURED_BY_DEFAULT = ("sanitize",)
CROSSCHECK_PAIRS = 2  # benchmark_app runs, each after compresskit timed the same IR alone
NONDETERMINISM = [
    "speed figures vary run to run (shared CPU, frequency scaling); compare ratios measured in one run "
    "(speedup_vs_baseline), not absolute latencies across runs",
    "onnxruntime and OpenVINO parallelise reductions across threads, so outputs (and quality figures) may "
    "differ in the last bits between thread counts; quality is measured at the headline thread count",
    "MiniLM caption vectors depend in the last bits (~1e-7) on which captions share their batch, so a run "
    "whose caption cache was cold can train a different student than one whose cache was warm; with the same "
    "cache, the same recipe and seed give byte-identical weights",
]


def read_run_summary(run_dir: Path) -> dict:
    """``run.json`` of a run folder; ArtifactError (one line) if it is missing or unreadable."""
    try:
        summary = json.loads((run_dir / "run.json").read_text("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{run_dir} has no run.json: the run never finished a step; rerun `compresskit run`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{run_dir / 'run.json'} is unreadable ({exc}); rerun `compresskit run` to rewrite it") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("steps"), list):
        raise ArtifactError(f"{run_dir / 'run.json'} is not a compresskit run summary; rerun `compresskit run`")
    return summary


def check_report_is_current(report: Report, report_path: Path) -> None:
    """ArtifactError (one line) when the run folder holding ``report.json`` changed after it was measured.

    A ``compresskit run --no-bench`` (or a failed rerun) with another recipe rewrites ``run.json`` and leaves
    the old report behind; gating that report would pass or fail artifacts that are no longer the run's.
    """
    run_dir = Path(report_path).parent
    if not (run_dir / "run.json").is_file():
        return  # a report copied out of its run folder: nothing to compare with
    summary = read_run_summary(run_dir)
    now = (summary.get("recipe_hash"), [s.get("output_id") for s in summary["steps"]])
    measured = ((report.model_extra or {}).get("recipe_hash"), [s.get("output_id") for s in report.steps])
    if now != measured:
        what = "recipe" if now[0] != measured[0] else "steps"
        raise ArtifactError(f"{report_path} is stale: the run folder's {what} changed after it was measured "
                            f"(e.g. `compresskit run --no-bench`); re-measure with `compresskit bench {run_dir}`")


def run_candidates(run_dir: Path, settings: BenchSettings) -> list[Candidate]:
    """Baseline first, then the chosen steps' artifacts (checked against their manifests)."""
    summary = read_run_summary(run_dir)
    steps = summary["steps"]
    if not steps or any(s["status"] == "failed" for s in steps):
        raise ArtifactError(f"{run_dir}: the run did not finish; rerun `compresskit run` before measuring it")
    inputs = sorted((run_dir / "artifacts").glob(f"00-input-{summary['input_id']}"))
    if not inputs:
        raise ArtifactError(f"{run_dir}: the input artifact {summary['input_id']} is missing; rerun the recipe")
    names = step_names([s["name"] for s in steps])
    wanted = settings.candidates
    if wanted is None:
        wanted = [n for n, s in zip(names, steps) if s["name"] not in NOT_MEASURED_BY_DEFAULT]
        wanted = wanted if names[-1] in wanted else wanted + [names[-1]]
    wanted = [names[-1] if w == "final" else w for w in wanted]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ArtifactError(f"{run_dir}: no step named {unknown[0]!r} to measure; steps are {', '.join(names)}")
    chosen = [Candidate("baseline", load_artifact(inputs[0]), 0, role="baseline")]
    for name, step in zip(names, steps):
        if name in wanted:
            # by folder name under this run folder, so a moved run folder (or another cwd) still works
            chosen.append(Candidate(name, load_artifact(run_dir / "artifacts" / Path(step["path"]).name), step["step"]))
    return chosen


def with_references(candidates: list[Candidate], references: dict) -> list[Candidate]:
    """The baseline, then the teacher's plain exports, then the recipe's candidates."""
    return [candidates[0], *(Candidate(name, artifact, 0, role="reference") for name, artifact in references.items()),
            *candidates[1:]]


def with_bf16(candidates: list[Candidate], wanted: list[str], final_name: str,
              native: tuple[bool, str] = (True, "")) -> tuple[list[Candidate], dict[str, str]]:
    """Add ``NAME@bf16`` for each named OpenVINO candidate (and for teacher_openvino whenever any is asked);
    returns (candidates, {name: why not measured}). ``native``: (the CPU computes bf16 natively, what it has);
    without it every asked variant is not applicable (one line each) and none is timed as if it were bf16."""
    if not wanted:
        return candidates, {}
    by_name = {c.name: c for c in candidates}
    wanted = [final_name if w == "final" else w for w in wanted]
    if "teacher_openvino" in by_name and "teacher_openvino" not in wanted:
        wanted = ["teacher_openvino", *wanted]  # the exported teacher at the same precision: speedup_vs_exported_teacher
    extra = []
    for name in dict.fromkeys(wanted):
        found = by_name.get(name)
        if found is None or found.artifact.format != "openvino":
            choices = ", ".join(c.name for c in candidates if c.artifact.format == "openvino") or "none"
            raise ConfigError(f"bench.speed.bf16 names {name!r}, which is not a measured OpenVINO candidate "
                              f"(OpenVINO candidates: {choices})")
        extra.append(dataclasses.replace(found, name=f"{name}{BF16_SUFFIX}", precision="bf16"))
    if not native[0]:
        why = f"not applicable: this CPU has no native bf16 ({native[1]}); OpenVINO would emulate it, so it was not timed"
        return candidates, {c.name: why for c in extra}
    return candidates + extra, {}


def _torch_ancestors(candidates: list[Candidate], run_dir: Path) -> dict[str, object]:
    """For each candidate, the nearest torch artifact up its parent chain (itself if torch)."""
    by_id = {}
    for folder in [*(run_dir / "artifacts").iterdir(), *(run_dir / BASELINES_DIR).glob("*")]:
        try:
            by_id[load_artifact(folder, verify=False).id] = folder
        except ArtifactError:
            continue  # not a finished artifact; its parent chain is not needed
    found = {}
    for c in candidates:
        artifact = c.artifact
        while artifact is not None and artifact.format != "torch":
            parent = by_id.get(artifact.parent_id)
            artifact = load_artifact(parent) if parent else None
        found[c.name] = artifact
    return found


def _environment(threads: int | None = None) -> dict:
    """The machine measured on (CPU, ISA, native bf16, OpenVINO's capabilities, threads used) and the versions."""
    versions = {}
    for lib in ("compresskit", "torch", "onnxruntime", "openvino", "nncf", "torch-pruning", "torchmetrics"):
        try:
            versions[lib] = version(lib)
        except PackageNotFoundError:
            versions[lib] = "not installed"
    return {**machine_info(threads), "python": platform.python_version(), "versions": versions}


def sample_captions(evalset, chosen: list[str] | None) -> list[str]:
    if chosen:
        return chosen
    if evalset.data["name"] == "emoji":
        known = set(evalset.train_captions) | set(evalset.captions)
        picked = [c for c in EMOJI_SAMPLE_CAPTIONS if c in known]
        if len(picked) >= 4:
            return picked
    return list(dict.fromkeys(evalset.captions))[:8]


def measure(candidates: list[Candidate], settings: BenchSettings, out_dir: Path, *, evalset, torch_ancestors: dict,
            context: dict, gates: list[GateSpec] = (), progress: Callable[[str], None] = lambda m: None) -> Report:
    """Measure every candidate (the first is the baseline), write the report files, return the report.

    ``context["final_step"]``: (number, name) of the recipe's last step, which gates call ``final``.
    """
    with torch_threads():  # runtimes set torch's process-wide thread count; restore it afterwards
        return _measure(candidates, settings, out_dir, evalset=evalset, torch_ancestors=torch_ancestors,
                        context=context, gates=gates, progress=progress)


def _crosscheck(candidates: list[Candidate], settings, threads: int, final_name: str | None,
                progress) -> dict[str, dict]:
    """benchmark_app's batch-1 median for every OpenVINO candidate ``settings.crosscheck`` names, alternated with
    compresskit timing the same IR alone (``time_alone``), so the pair is measured in the same minutes of a
    noisy machine."""
    chosen = chosen_names(settings.crosscheck, candidates, final_name)
    if isinstance(settings.crosscheck, list):
        not_ir = [c.name for c in candidates if c.name in chosen and c.artifact.format != "openvino"]
        if not_ir:
            choices = ", ".join(c.name for c in candidates if c.artifact.format == "openvino") or "none"
            raise ConfigError(f"bench.speed.crosscheck names {not_ir[0]!r}, which is not an OpenVINO candidate "
                              f"(OpenVINO candidates: {choices})")
    found = {}
    for c in candidates:
        if c.artifact.format != "openvino" or c.name not in chosen:
            continue
        progress(f"benchmark_app on {c.name}")
        deploy = c.deployment(threads, 1)
        ours, theirs = [], []
        for _ in range(CROSSCHECK_PAIRS):
            ours += time_alone(c.artifact.path, deploy, rounds=3, per_round=settings.per_round,
                               warmup_s=settings.warmup_s)
            p50_ms, command = benchmark_app_p50(c.artifact.file(OPENVINO_XML), static_shapes(c.artifact.io), threads,
                                                c.precision, settings.crosscheck_seconds)
            theirs.append(p50_ms)
        app_ms, alone_ms = float(np.median(theirs)), float(np.median(ours))
        found[c.name] = metric("benchmark_app_ms_p50", app_ms, threads=threads, batch=1, command=command,
                               compresskit_alone_ms_p50=round(alone_ms, 4), ratio=round(alone_ms / app_ms, 3),
                               how=f"OpenVINO benchmark_app (static shape, 1 stream, sync API, same threads and "
                                   f"precision), {CROSSCHECK_PAIRS} runs alternated with compresskit timing the IR alone")
    return found


def _remeasure_marginal(timing, candidates: list[Candidate], gates, headline: int, final_number: int | None,
                        speed: SpeedSettings, progress) -> None:
    """Time again (up to ``speed.remeasure`` times) the candidate and reference of every speed gate whose interval
    straddles its threshold, until it clears; what is left straddling is decided by the gate's ``marginal`` rule.
    Every speed gate is timed in at least ``speed.min_launches`` worker launches, straddling or not."""
    speed_gates = [g for g in gates if g.metric in INTERVAL_METRICS]
    for attempt in range(1, max(speed.remeasure, speed.min_launches - 1) + 1):
        entries = [{"name": c.name, "final": c.role == "candidate" and c.step == final_number and c.precision == "f32",
                    "metrics": timing.results[c.name].get(headline, {}),
                    "by_threads": {str(t): r for t, r in timing.results[c.name].items()}} for c in candidates]
        report = {"candidates": entries}
        wanted = marginal_speed_gates(report, speed_gates, headline) if attempt <= speed.remeasure else []
        if attempt < speed.min_launches:
            wanted += [key for key in marginal_speed_gates(report, speed_gates, headline, every=True) if key not in wanted]
        if not wanted:
            return
        for threads in dict.fromkeys(t for _, _, t in wanted):
            pairs = [(name, metric_name) for name, metric_name, t in wanted if t == threads]
            progress(f"timing again ({attempt}) at {threads} thread(s): "
                     + ", ".join(f"{name} {metric_name}" for name, metric_name in pairs)
                     + f" (a speed gate is timed in at least {speed.min_launches} launch(es), or its interval "
                       "straddles the gate's threshold)")
            timing.remeasure(pairs, threads, attempt)


def _measure(candidates, settings, out_dir, *, evalset, torch_ancestors, context, gates, progress) -> Report:
    started = time.perf_counter()
    headline = max(settings.speed.threads)
    final_number, final_name = context.get("final_step") or (None, None)
    phases, mark = {}, time.perf_counter()

    def lap(phase: str) -> None:  # seconds each phase took, in the report (where a bench's time goes)
        nonlocal mark
        phases[phase] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()

    with measuring(progress):  # timing: alone on the machine (other processes' builds finish first, new ones wait)
        timing = measure_speed(candidates, settings.speed, progress=progress, final_name=final_name)
        _remeasure_marginal(timing, candidates, gates, headline, final_number, settings.speed, progress)
    speed, applied = timing.results, timing.applied
    lap("speed")
    if settings.speed.crosscheck:
        with measuring(progress):
            crosschecked = _crosscheck(candidates, settings.speed, headline, final_name, progress)
        for name, record in crosschecked.items():
            speed[name][headline]["benchmark_app_ms_p50"] = record
        lap("crosscheck")
    captions = sample_captions(evalset, settings.sample_captions)
    scored = chosen_names(True if settings.quality.candidates is None else settings.quality.candidates, candidates,
                          final_name)
    with building(progress):  # every core busy rendering: never beside another process's timing
        quality, quality_errors, samples = measure_quality(
            [c for c in candidates if c is candidates[0] or c.name in scored], evalset, settings.quality, headline,
            captions, progress)
    lap("quality")
    measured = {}
    probed = chosen_names(settings.speed.probe, candidates, final_name)
    for c in candidates:
        progress(f"size and footprint of {c.name}")
        metrics = dict(speed[c.name][headline])
        metrics["size_mb"] = metric("size_mb", size_mb(c.artifact), how="payload files on disk (manifest excluded)")
        metrics.update(model_cost(c.artifact, torch_ancestors.get(c.name)))
        if c.name in probed:
            with measuring(progress):  # first-inference time is a timing too
                metrics.update(measure_footprint(c, headline))
        measured[c.name] = metrics
    lap("size_and_footprint")
    if settings.speed.peak:
        progress("the runtimes' peak GMAC/s on one large convolution")
        with measuring(progress):
            rates_by_name = measure_compute_rates(candidates, measured, headline, settings.speed.peak_calls)
        for name, rates in rates_by_name.items():
            measured[name].update(rates)
        lap("peak")
    entries = []
    for c in candidates:
        metrics = measured[c.name]
        metrics.update(quality.get(c.name, {}))
        if c.role == "candidate":
            metrics.update(reported_by_pass(c.artifact))
        errors = {"quality": quality_errors[c.name]} if c.name in quality_errors else {}
        entries.append({"name": c.name, "step": c.step, "artifact_id": c.artifact.id, "path": str(c.artifact.path),
                        "format": c.artifact.format, "backend": c.backend, "precision": c.precision, "role": c.role,
                        "final": c.role == "candidate" and c.step == final_number and c.precision == "f32",
                        "metrics": metrics,
                        "by_threads": {str(t): r for t, r in speed[c.name].items()},
                        "runtime_settings": {str(t): r for t, r in applied[c.name].items()}, "errors": errors,
                        "producer": c.artifact.producer.get("pass"), "meta": c.artifact.meta})
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / SAMPLES_NPZ) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, captions=np.array(captions), **samples)
    samples_grid(samples, captions, out_dir / SAMPLES_PNG)
    points = pareto_points(entries)
    pareto_plot(points, out_dir / PARETO_PNG, f"{context.get('recipe', {}).get('name', 'bench')}: latency vs KID "
                f"({headline} thread(s))", references={e["name"] for e in entries if e["role"] != "candidate"})
    frontier = quality_frontier(entries)
    if frontier and frontier["points"]:
        frontier_plot(frontier, out_dir / FRONTIER_PNG, f"{context.get('recipe', {}).get('name', 'bench')}: the "
                      f"quality-held frontier ({headline} thread(s); budget shaded; squares: teacher and its exports)")
    not_applicable = context.get("not_applicable", {})
    gate_results = evaluate_gates({"candidates": entries, "final_step": final_name, "not_applicable": not_applicable},
                                  list(gates))
    report = {
        "schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{k: v for k, v in context.items() if k != "final_step"}, "final_step": final_name,
        "environment": _environment(headline), "settings": settings.model_dump(mode="json"),
        "headline_threads": headline, "data": evalset.data, "quality_n": len(evalset.captions),
        "metric_info": {name: {"unit": i.unit, "direction": i.direction, "about": i.about}
                        for name, i in known_metrics().items()},
        "candidates": entries,
        "pareto": {"x": "latency_ms_p50", "y": "kid", "threads": headline, "front": pareto_front(points)},
        "frontier": frontier,
        "sample_captions": captions, "nondeterminism": NONDETERMINISM,
        "gates": [g.model_dump() for g in gate_results], "verdict": verdict(gate_results),
        "bench_seconds": round(time.perf_counter() - started, 1), "bench_phase_seconds": phases,
    }
    return write_report(report, out_dir)


def reported_by_pass(artifact) -> dict:
    """The figures the pass that made ``artifact`` declared and reported (``PassResult.metrics``)."""

    producer = artifact.producer.get("pass")
    if producer in (None, "input"):
        return {}
    return {name: metric(name, artifact.meta[name], how=f"reported by the {producer} pass")
            for name in pass_class(producer).metrics if name in artifact.meta}


def write_report(raw: dict, out_dir: Path) -> Report:
    """Check ``raw`` against the Report schema (a malformed report is never written), write report.json and
    report.md, and return the typed Report."""

    plain = json.loads(json.dumps(raw, default=str))  # what the file will hold (paths, numpy scalars as JSON)
    report = validated_report(plain, f"the report of {out_dir}", " (a bug: please report it)")
    # both written before either is renamed into place: a full disk leaves the previous pair, never a new json
    # beside an old md
    with atomic_file(out_dir / REPORT_JSON) as json_tmp, atomic_file(out_dir / REPORT_MD) as md_tmp:
        json_tmp.write_text(json.dumps(plain, indent=1) + "\n", encoding="utf-8")
        md_tmp.write_text(report_markdown(plain), encoding="utf-8")
    return report


def bench_run(run_dir: Path, settings: BenchSettings | None = None, gates: list[GateSpec] | None = None,
              progress: Callable[[str], None] = lambda m: None, store: ArtifactStore | None = None) -> Report:
    """Measure a finished run folder (its recipe's bench settings and gates unless given), write its report
    (report.json, report.md, plots) and return it; the teacher's plain exports come from ``store`` if it has them."""
    if not Path(run_dir).is_dir():
        raise ArtifactError(f"{run_dir} is not a folder; give a run folder made by `compresskit run`")
    with run_lock(Path(run_dir)):  # one owner per run folder (re-entrant: `compresskit run` already holds it)
        with disk_full_said("the bench (the teacher's exports, the report, its plots and samples)", Path(run_dir)):
            return _bench_run(Path(run_dir), settings, gates, progress, store)


def _bench_run(run_dir: Path, settings: BenchSettings | None, gates: list[GateSpec] | None, progress,
               store: ArtifactStore | None = None) -> Report:

    summary = read_run_summary(run_dir)
    recipe = summary["recipe"]  # resolved and validated by the runner when the run was made
    settings = settings or BenchSettings.model_validate(recipe.get("bench") or {})
    if gates is None:
        gates = parse_gates(recipe["gates"], f"{run_dir / 'run.json'} (recipe gates)") if recipe.get("gates") else []
    candidates = run_candidates(run_dir, settings)
    references, reference_errors = {}, {}
    if settings.speed.exported_teacher:
        with building(progress):
            references, reference_errors = teacher_exports(run_dir, candidates[0].artifact, seed=summary["recipe"]["seed"],
                                                           threads=max(settings.speed.threads), progress=progress,
                                                           store=store)
    final_name = step_names([s["name"] for s in summary["steps"]])[-1]
    candidates, not_applicable = with_bf16(with_references(candidates, references), settings.speed.bf16, final_name,
                                           native_bf16("cpu"))
    data = candidates[0].artifact.dataset  # the input's dataset, carried by the runner to every step
    split, diversity_n = settings.quality.split, settings.quality.diversity_captions
    evalset = eval_set(data, split=split, diversity_n=diversity_n)  # quality.n is an upper bound: a smaller split is used whole
    if settings.quality.n and settings.quality.n < len(evalset.captions):
        evalset = eval_set(data, settings.quality.n, split, diversity_n)
    factory = summary["recipe"]["input"].get("factory")
    context = {"recipe": summary["recipe"], "recipe_hash": summary["recipe_hash"], "run_dir": str(run_dir),
               "code_imported": [factory] if factory else [],  # only what the recipe names explicitly
               "status": summary["status"], "failed_step": summary["failed_step"], "steps": summary["steps"],
               "input_id": summary["input_id"], "final_step": (len(summary["steps"]), final_name),
               "reference_errors": reference_errors, "not_applicable": not_applicable}
    return measure(candidates, settings, run_dir, evalset=evalset, torch_ancestors=_torch_ancestors(candidates, run_dir),
                   context=context, gates=gates, progress=progress)


def failed_report(run_dir: Path, gates: list[GateSpec] = ()) -> Report:
    """The report of a run whose step failed: which step and why, every gate failed, verdict fail."""
    summary = read_run_summary(Path(run_dir))
    failed = next((s for s in summary["steps"] if s["status"] == "failed"), None)
    report = {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "recipe": summary["recipe"], "recipe_hash": summary["recipe_hash"], "run_dir": str(run_dir),
              "status": "failed", "failed_step": summary["failed_step"], "steps": summary["steps"],
              "error": failed["error"] if failed else None, "environment": _environment(), "candidates": [],
              "gates": [g.model_dump() for g in evaluate_gates({"candidates": []}, list(gates))], "verdict": "fail"}
    return write_report(report, Path(run_dir))

