"""The library's doors: ``run`` a recipe, ``compress`` a model in a notebook, ``measure`` and ``gate`` a run.

    import compresskit

    report = compresskit.run("recipes/edge-int8.yaml", out="runs/edge")      # a recipe file, Recipe or dict
    print(report.table(), report.verdict)
    report.candidate("final").value("speedup_vs_teacher_int8")

    report = compresskit.compress(my_generator, ["sanitize", "export_onnx", "export_openvino", "quantize_nncf"],
                                  data={"name": "emoji"}, out="runs/mine")

Every door returns a typed :class:`~compresskit.bench.schema.Report` (the same object ``report.json`` holds) and
raises a :class:`~compresskit.errors.CompresskitError` subclass with a one-line message for bad input; a failed
release gate raises :class:`~compresskit.errors.GateFailed` (its ``report`` attribute holds the report) unless
``gate=False``. The command line (``compresskit run/bench/gate``) is a printer over these functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from .artifact import load_artifact
from .bench.crosscheck import benchmark_app_p50, static_shapes
from .bench.gate import GateSpec, evaluate_gates, load_gates, parse_gates, verdict
from .bench.harness import time_alone
from .bench.report import bench_run, check_report_is_current, failed_report
from .bench.schema import REPORT_JSON, SCHEMA_VERSION, Report, load_report
from .bench.settings import BenchSettings
from .bench.speed import percentiles
from .errors import CompresskitError, ConfigError, GateFailed
from .hardware import native_bf16
from .lock import run_lock
from .models.contract import is_user_model
from .models.dfgan import GeneratorConfig
from .models.io import save_model
from .models.trust import trust_factories
from .passes.store import ArtifactStore
from .recipe import Recipe, load_recipe, parse_recipe
from .runner import Event, RunResult
from .runner import run as run_steps
from .runtimes import OPENVINO_XML, PRECISIONS, Deployment

Progress = Callable[[Event], None]
StepSpec = str | dict[str, dict | None]  # "export_onnx" or {"distill": {...config...}}


def _quiet(event: Event) -> None:
    """The default progress: nothing."""


RUN_LOG = "run.log"
THIRD_PARTY_LOGGERS = ("", "nncf", "openvino", "torch", "torch_pruning", "onnxruntime")  # "": the root logger
# (onnxruntime's quantisation tools log their advice through it)


class _LogStream:
    """The text stream the third-party loggers' handler writes run.log through (``append``: one write each)."""

    def __init__(self, append: Callable[[str], None]):
        self.write, self.flush = append, lambda: None


@contextlib.contextmanager
def _run_log(folder: Path, progress: Progress) -> Iterator[Progress]:
    """Append the run's events to ``folder/run.log`` with timestamps, and send third-party chatter there too
    (Python warnings such as torch's TracerWarnings, and the loggers of nncf, openvino, torch ...) instead of the
    user's console. Yields the progress callback that also logs."""
    folder.mkdir(parents=True, exist_ok=True)
    # unbuffered, each line one write; a line the disk has no room for is dropped (a log never stops a run: the
    # artifact that cannot be written says so), and nothing is left in a buffer to fail at close
    with open(folder / RUN_LOG, "ab", buffering=0) as log:
        def append(text: str) -> None:
            with contextlib.suppress(OSError):
                log.write(text.encode("utf-8", "replace"))

        def write(line: str) -> None:
            append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

        def logged(event: Event) -> None:
            if event.kind == "start":
                write(f"step {event.step} {event.name} ({event.id}) started")
            elif event.kind == "done" and event.record is not None:
                write(f"step {event.step} {event.name} {event.record.status} in {event.record.seconds:.1f} s")
            elif event.kind == "log":
                write(event.message or "")
            progress(event)

        def to_log(message, category, filename, lineno, file=None, line=None) -> None:
            write(f"{category.__name__} ({Path(filename).name}:{lineno}): {message}")

        with contextlib.suppress(ImportError):  # NNCF adds its stdout handler when first imported: before we swap
            import nncf.common.logging.logger  # noqa: F401  (every INT8 step and the bench's teacher_int8 import it)
        handler = logging.StreamHandler(_LogStream(append))
        handler.handleError = lambda record: None  # type: ignore[method-assign]  # as above: never a traceback
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
        saved = {}
        for name in THIRD_PARTY_LOGGERS:
            logger = logging.getLogger(name)
            saved[name] = (logger.handlers[:], logger.propagate)
            logger.handlers[:] = [handler]
            logger.propagate = False
        with warnings.catch_warnings():
            warnings.showwarning = to_log
            try:
                yield logged
            finally:
                for name, (handlers, propagate) in saved.items():
                    logging.getLogger(name).handlers[:] = handlers
                    logging.getLogger(name).propagate = propagate


def _as_recipe(recipe: Recipe | str | Path | dict) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(recipe, str(recipe.get("name") or "recipe"))
    if isinstance(recipe, (str, Path)):
        return load_recipe(Path(recipe))
    raise ConfigError(f"recipe must be a Recipe, a YAML path or a dict; got {type(recipe).__name__}")


def _steps_report(recipe: Recipe, result: RunResult) -> Report:
    """A run's report when it was not measured (``bench=False``): its steps, no candidates, no verdict."""
    return Report(schema_version=SCHEMA_VERSION, recipe=recipe.resolved(), status="done", candidates=[], gates=[],
                  verdict="not measured", run_dir=str(result.run_dir), final_step=result.steps[-1].name,
                  steps=[vars(r) for r in result.steps])


def raise_if_failed(report: Report, gate: bool = True) -> Report:
    """``report``, or GateFailed (one line naming the failed gates, the report attached) when ``gate`` and a gate failed."""
    if gate and report.verdict == "fail":
        failed = report.failed_gates
        raise GateFailed(f"{len(failed)} of {len(report.gates)} gates failed: "
                         + ", ".join(f"{g.candidate} {g.metric}" for g in failed), report=report)
    return report


def run(recipe: Recipe | str | Path | dict, out: str | Path | None = None, *, bench: bool = True, gate: bool = True,
        progress: Progress | None = None, wait: bool = False, trust_factory: Sequence[str] = (),
        store: str | Path | None = None) -> Report:
    """Take a generator through a recipe's steps (finished steps are reused), measure the artifacts, check the gates.

    Args:
        recipe: a recipe YAML path, a parsed :class:`~compresskit.recipe.Recipe`, or the same mapping as a dict
            (``{"input": {"model": "emoji32-v3"}, "steps": [{"sanitize": {}}, ...], "gates": [...]}``).
        out: the run folder (created if missing; a second run in it reuses finished steps) [``runs/<name>``].
        bench: measure speed, memory, size and quality of every artifact against the teacher (report.json,
            report.md, plots); False returns after the steps with ``verdict == "not measured"``.
        gate: raise :class:`~compresskit.errors.GateFailed` when a gate of the recipe fails (the report is
            written either way, and attached to the exception as ``.report``).
        progress: called with each :class:`~compresskit.runner.Event` (step start/done, log lines, training
            counters, the bench's phases as ``log`` events).
        wait: if another process holds the run folder, wait for it instead of raising ``RunFolderBusy``.
        trust_factory: user factories (``package.module[:callable]``) that model folders may name and run.
        store: a folder of finished artifacts shared by many run folders [``$COMPRESSKIT_STORE``, else none]: a
            step it holds is copied into ``out`` (and recorded as cached), a step computed here is published to
            it; runs in parallel processes that share a prefix of steps compute each shared step once.

    Returns:
        The typed :class:`~compresskit.bench.schema.Report` (also written to ``out/report.json``).

    Raises:
        RecipeError: the recipe is malformed (one line naming the step and key, before anything runs).
        ConfigError: ``out`` is a file, or another argument is wrong.
        PassFailed / ArtifactError / ...: a step failed (``out/report.json`` then says which, verdict fail).
        GateFailed: a gate failed and ``gate`` is True.
    """
    trust_factories(trust_factory)
    parsed = _as_recipe(recipe)
    folder = Path(out) if out is not None else Path("runs") / parsed.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"the run folder {folder} is a file; give a folder for the run (it is created if missing)")
    with run_lock(folder, wait=wait), _run_log(folder, progress or _quiet) as emit:  # one owner per run folder
        try:
            result = run_steps(parsed, folder, on_event=emit, store=Path(store) if store is not None else None)
        except CompresskitError:
            if (folder / "run.json").is_file():
                failed_report(folder, parsed.gates)
            raise
        if not bench:
            return _steps_report(parsed, result)
        shared = ArtifactStore.opened(store, lambda message: emit(Event("log", message=message)))
        report = bench_run(folder, progress=lambda message: emit(Event("log", message=message)), store=shared)
    return raise_if_failed(report, gate)


def measure(run_dir: str | Path, *, threads: Sequence[int] | None = None, n: int | None = None,
          split: str | None = None, candidates: Sequence[str] | None = None,
          gates: str | Path | list[GateSpec] | None = None, gate: bool = False, progress: Progress | None = None,
          wait: bool = False) -> Report:
    """Measure a finished run folder again (its recipe's bench settings, changed by the arguments given).

    Args:
        run_dir: a folder made by :func:`run` (or ``compresskit run``).
        threads: thread counts to time at [the recipe's]; the largest is the headline.
        n: captions of the scored split for quality [all of it].
        split: ``eval`` (report, gate) or ``val`` (tune) [the recipe's].
        candidates: step names to measure [all but sanitize].
        gates: a gates YAML or parsed gates [the recipe's gates].
        gate: raise :class:`~compresskit.errors.GateFailed` when a gate fails.
        progress: called with a ``log`` :class:`~compresskit.runner.Event` per measuring phase.
        wait: if a run holds the folder, wait for it.

    Returns:
        The typed Report (``run_dir/report.json`` is rewritten).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise ConfigError(f"{run_dir} has no recipe.yaml: not a run folder; give a folder made by `compresskit run`")
    settings: BenchSettings = load_recipe(run_dir / "recipe.yaml").bench
    if threads:
        if any(not isinstance(t, int) or t < 1 for t in threads):
            raise ConfigError(f"threads takes positive integers like 1,2; got {list(threads)!r}")
        settings = settings.model_copy(update={"speed": settings.speed.model_copy(update={"threads": list(threads)})})
    if split not in (None, "eval", "val"):
        raise ConfigError(f"split must be eval or val, got {split!r}")
    update = {k: v for k, v in (("n", n), ("split", split)) if v}
    if update:
        settings = settings.model_copy(update={"quality": settings.quality.model_copy(update=update)})
    if candidates:
        settings = settings.model_copy(update={"candidates": list(candidates)})
    specs = load_gates(Path(gates)) if isinstance(gates, (str, Path)) else gates
    emit = progress or _quiet
    with run_lock(run_dir, wait=wait):
        report = bench_run(run_dir, settings, specs, progress=lambda message: emit(Event("log", message=message)))
    return raise_if_failed(report, gate)


def gate(report: Report | str | Path, gates: str | Path | list[GateSpec | dict] | None = None, *,
         raise_on_fail: bool = False) -> Report:
    """Check a report against release gates (a gates YAML, a list of gates as dicts or ``GateSpec``, or the
    report's own recipe gates).

    ``report`` is a Report or a report.json / run folder path; a report whose run folder changed after it was
    measured is refused (ArtifactError: re-measure it). Returns the report with the new ``gates`` results and
    ``verdict``; with ``raise_on_fail`` a failing gate raises :class:`~compresskit.errors.GateFailed`.
    """
    if not isinstance(report, Report):
        path = Path(report)
        report = load_report(path)
        check_report_is_current(report, path / REPORT_JSON if path.is_dir() else path)
    if isinstance(gates, (str, Path)):
        specs = load_gates(Path(gates))
    elif gates is not None:
        specs = parse_gates([g.model_dump() if isinstance(g, GateSpec) else g for g in gates], "gates")
    elif report.recipe.get("gates"):
        specs = parse_gates(report.recipe["gates"], "the report's recipe gates")
    else:
        raise ConfigError("the report's recipe has no gates; give a gates file (--gates GATES.yaml)")
    results = evaluate_gates(report if report.status != "failed" else {"candidates": []}, specs)
    checked = report.model_copy(update={"gates": results, "verdict": verdict(results)})
    return raise_if_failed(checked, raise_on_fail)


def time_artifact(artifact_dir: str | Path, *, threads: int = 2, rounds: int = 10, per_round: int = 20,
                  warmup: int = 20, precision: str = "f32", crosscheck: bool = False, option_prefix: str = "") -> dict:
    """Time one artifact alone in a fresh worker process, deployed for batch-1 latency, in the harness's blocks.

    Returns ``{artifact, format, threads, precision, latency_ms_p50, latency_ms_p90, n}``; with ``crosscheck`` on
    an OpenVINO IR also ``benchmark_app_ms_p50`` (OpenVINO's own tool, same IR, shapes, threads, precision), the
    command it ran, and ``per_call_dict_ms_p50`` (the same schedule without inputs bound once). ``precision``
    bf16 is refused on a CPU without native bf16 (it would be emulated and timed as if it were real).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"{option_prefix}precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    native, why = native_bf16("cpu")
    if precision == "bf16" and not native:
        raise ConfigError(f"{option_prefix}precision bf16 is not applicable here: this CPU has no native bf16 "
                          f"({why}); time it at f32, or on a CPU with AVX512-BF16 or AMX")
    artifact = load_artifact(artifact_dir)
    deploy = Deployment(threads=threads, batch=1, hint="latency", precision=precision)  # type: ignore[arg-type]
    found = percentiles(time_alone(artifact.path, deploy, warmup=warmup, rounds=rounds, per_round=per_round))
    result = {"artifact": str(artifact.path), "format": artifact.format, "threads": threads, "precision": precision,
              "latency_ms_p50": found["p50"], "latency_ms_p90": found["p90"], "n": found["n"]}
    if crosscheck and artifact.format == "openvino":
        result["benchmark_app_ms_p50"], result["benchmark_app_command"] = benchmark_app_p50(
            artifact.file(OPENVINO_XML), static_shapes(artifact.io), threads, precision)
        # the same schedule through the per-call dict API: what binding the inputs once saves
        per_dict = dataclasses.replace(deploy, bind_inputs=False)
        result["per_call_dict_ms_p50"] = percentiles(time_alone(artifact.path, per_dict, warmup=warmup, rounds=rounds,
                                                                per_round=per_round))["p50"]
    return result


def _model_input(model: Any, folder: Path, factory: str | None, factory_kwargs: dict | None,
                 data: dict | None) -> dict:
    """The recipe ``input`` for ``model``: a shipped name or folder as it is; an in-memory module written to
    ``folder`` (a compresskit generator in its own format; any other module as safetensors + its factory)."""
    spec: dict = {}
    if data is not None:
        spec["data"] = data
    if isinstance(model, (str, Path)):
        return {"model": str(model), **spec}
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, a shipped model name or a model folder; "
                          f"got {type(model).__name__}")

    if isinstance(getattr(model, "config", None), GeneratorConfig) or is_user_model(model):
        save_model(folder, model.eval())
        return {"model": str(folder), **spec}
    if factory is None:
        raise ConfigError(f"{type(model).__name__} is not a compresskit generator: give factory='package.module:"
                          "callable' that builds it (the bench rebuilds it in fresh processes), and z_dim")
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(weights))
    kwargs = dict(factory_kwargs or {})
    z_dim = kwargs.get("z_dim") or getattr(model, "z_dim", None)
    if z_dim is None:
        raise ConfigError(f"{type(model).__name__} has no z_dim attribute and factory_kwargs has none: pass "
                          "factory_kwargs={'z_dim': N, ...}")
    sizes = {k: getattr(model, k) for k in ("text_dim", "image_size") if isinstance(getattr(model, k, None), int)}
    return {"factory": factory, "kwargs": kwargs, "weights": str(weights), "z_dim": int(z_dim), **sizes, **spec}


def compress(model: Any, steps: Sequence[StepSpec] | str | Path, *, out: str | Path, data: dict | None = None,
             factory: str | None = None, factory_kwargs: dict | None = None, seed: int = 0,
             threads: int | None = None, gates: list[dict] | None = None, bench: bool | dict = True,
             gate: bool = False, progress: Progress | None = None, name: str | None = None) -> Report:
    """Compress a generator in memory (or a shipped name / model folder) with a list of steps, and measure it.

    Args:
        model: a compresskit generator (``nn.Module`` from ``compresskit.create_generator`` or
            ``load_model``), any ``nn.Module`` following the model contract together with ``factory``, or a
            shipped model name / model folder.
        steps: the passes in order, each a pass name or ``{name: config}`` (``compresskit passes`` lists
            them); or a recipe path whose steps are used (its input is replaced by ``model``).
        out: the run folder (the model is written into ``out/input-model`` first).
        data: the dataset the generator learnt (``{"name": "emoji"}`` or ``{"name": "shapes"}``), for steps that
            calibrate or distil and for quality; a compresskit generator's metadata says it already.
        factory: ``package.module:callable`` that builds ``model`` (for a module that is not compresskit's own).
        factory_kwargs: the factory's keyword arguments (``z_dim`` among them, or a ``model.z_dim`` attribute;
            ``text_dim`` and ``image_size`` are read from the model's attributes where it has them).
        seed, threads: as in a recipe.
        gates: release gates (``[{"metric": "speedup_vs_baseline", "goal": "threshold", "value": 2}]``).
        bench: measure the result (True), skip it (False), or bench settings as a dict (a recipe's ``bench:``).
        gate: raise :class:`~compresskit.errors.GateFailed` when a gate fails.
        progress: called with each :class:`~compresskit.runner.Event`.
        name: the recipe's name in the report [the folder's name].

    Returns:
        The typed Report.
    """
    out = Path(out)
    if isinstance(steps, (str, Path)):
        source = load_recipe(Path(steps))
        step_list: list = [{s.name: s.config.model_dump(mode="json")} for s in source.steps]
    else:
        step_list = [{s: {}} if isinstance(s, str) else s for s in steps]
    if not step_list:
        raise ConfigError("steps is empty: give at least one pass, e.g. ['sanitize', 'export_onnx']")
    raw: dict = {"name": name or out.name, "input": _model_input(model, out / "input-model", factory, factory_kwargs, data),
                 "seed": seed, "threads": threads, "steps": step_list, "gates": gates or []}
    if isinstance(bench, dict):
        raw["bench"] = bench
    trust = [raw["input"]["factory"]] if raw["input"].get("factory") else []  # the caller named it: it may run
    return run(raw, out, bench=bool(bench), gate=gate, progress=progress, trust_factory=trust)
