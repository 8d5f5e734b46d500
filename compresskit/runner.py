"""Run a recipe: input -> steps (each cache-aware) -> a run folder of artifacts and ``run.json``.

    RUN_DIR/recipe.yaml                     the resolved recipe (defaults filled in)
    RUN_DIR/artifacts/00-input-<id>/        the input generator, checksummed
    RUN_DIR/artifacts/NN-<pass>-<id>/       one folder per step: payload + manifest.json
    RUN_DIR/run.json                        per step: input/output ids, cached, seconds, status, meta
    RUN_DIR/final -> artifacts/NN-.../      a link to the last step's artifact (written when every step ran)
    RUN_DIR/scratch/NN-<pass>-<id>/         a running step's checkpoints (resume after a crash)

A step whose artifact folder already exists and passes its checksums is reused, not rerun; a folder
that fails them is deleted and rebuilt. Ids chain (pass + config + parent id + versions), so a config
change reruns that step and everything after it, and nothing before it. Each step writes into a
temporary folder that is renamed into place only when the pass and its manifest are complete.

With a store (``run(..., store=STORE)`` or ``$COMPRESSKIT_STORE``, ``passes/store.py``) a step the run folder
lacks is copied from the store when it holds it (recorded as cached), else computed here and published there;
a per-id lock makes parallel runs that share a prefix of steps compute each shared step once. A step that
computes holds the machine for building (``lock.building``), so no latency is timed beside it. A full disk stops
the run with one line (``diskspace``); the rerun goes on from the step it stopped in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .artifact import Artifact, Format, load_artifact, sha256_file, write_manifest
from .cache import atomic_dir, atomic_file, stable_hash
from .data.config import DEFAULT_DATA, DataConfig
from .diskspace import disk_full_said
from .errors import CompresskitError, DiskFull
from .lock import building, run_lock
from .models import io_spec, load_model, resolve_model_dir
from .models.io import CONFIG_FILE, DISC_FILE, WEIGHTS_FILE
from .models.trust import trust
from .models.user import FactorySpec, build, load_weights_into, prove_spec, write_user_generator
from .passes.base import PassContext
from .passes.execute import pass_output_id, produce, reuse_artifact
from .passes.store import ArtifactStore
from .recipe import Recipe
from .registry import pass_class
from .threads import torch_threads
from .train.distributed import World, main_first, process_group

ARTIFACTS = "artifacts"
FINAL = "final"  # RUN_DIR/final: a link to the last step's artifact


@dataclass
class StepRecord:
    step: int
    name: str
    input_id: str
    output_id: str
    path: str
    cached: bool
    seconds: float
    status: str  # "done" | "cached" | "failed"
    meta: dict = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Event:
    """What a run reports while it works, for a progress display (``on_event``).

    ``start``: a step begins (``step``, ``name``, ``id``); ``done``: it ended (``record``: cached or not,
    seconds, the artifact's path); ``log``: one line worth showing (``message``); ``progress``: a training
    step's counter (``done`` of ``total``, ``stats``: its losses).
    """

    kind: Literal["start", "done", "log", "progress"]
    step: int | None = None
    name: str | None = None
    id: str | None = None
    message: str | None = None
    record: StepRecord | None = None
    done: int | None = None
    total: int | None = None
    stats: dict = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    input: Artifact
    steps: list[StepRecord]
    final: Artifact


def input_dataset(spec, generator_meta: dict) -> tuple[dict, str]:
    """(the dataset a run's input learnt, where that came from): ``input.data``, else the model's own metadata,
    else the emoji default (said so: a shapes or user model calibrated on emoji would quietly mislead)."""

    declared = getattr(spec, "data", None)
    if declared is not None:
        return DataConfig.model_validate(declared).model_dump(mode="json"), "input.data"
    if generator_meta.get("data"):
        return DataConfig.model_validate(generator_meta["data"]).model_dump(mode="json"), "the model's metadata"
    return DataConfig.model_validate(DEFAULT_DATA["emoji"]).model_dump(mode="json"), "default (set input.data)"


def input_artifact(model_ref, artifacts_dir: Path) -> Artifact:
    """Copy the input generator into the run (checksummed), so the run folder is self-contained.

    ``model_ref``: a shipped name or folder, or a recipe ``InputSpec`` (a folder or a user factory).
    """
    if getattr(model_ref, "factory", None):
        return _factory_artifact(model_ref, artifacts_dir)
    spec = model_ref
    model_ref = getattr(model_ref, "model", model_ref)
    source = resolve_model_dir(model_ref)
    # the teacher's discriminator travels with it where it ships one (distillation may start from it). The input's
    # id is the generator's (config, weights, data): a step that reads the discriminator adds its hash to its own
    # id (``pass_output_id``), so shipping one does not invalidate every artifact made from the generator
    extra = (DISC_FILE,) if (source / DISC_FILE).is_file() else ()
    generator = load_model(source)  # validates before copying
    dataset, dataset_from = input_dataset(spec, generator.meta)
    digest = stable_hash({"files": {CONFIG_FILE: _generator_config_sha(source), WEIGHTS_FILE: sha256_file(source / WEIGHTS_FILE)},
                          "dataset": dataset})
    files = (CONFIG_FILE, WEIGHTS_FILE, *extra)
    folder = artifacts_dir / f"00-input-{digest}"
    existing = reuse_artifact(folder)
    same_disc = existing is not None and (
        (existing.path / DISC_FILE).is_file() == bool(extra)
        and (not extra or sha256_file(existing.path / DISC_FILE) == sha256_file(source / DISC_FILE)))
    if same_disc:
        return existing
    with atomic_dir(folder, replace=existing is not None) as tmp:  # a discriminator shipped (or changed) since
        for name in files:
            shutil.copy2(source / name, tmp / name)
        write_manifest(tmp, id=digest, parent_id=None, format=Format.TORCH,
                       producer={"pass": "input", "source": str(model_ref)}, io=io_spec(generator),
                       dataset=dataset, lineage=[{"pass": "input", "id": digest}],
                       meta={"dataset_from": dataset_from})
    return load_artifact(folder)


def _generator_config_sha(source: Path) -> str:
    """sha256 of config.json as it reads without its ``discriminator`` entry (the bytes ``save_model`` writes):
    a folder that ships a discriminator keeps the id its generator had without one."""
    import hashlib

    config = json.loads((source / CONFIG_FILE).read_text("utf-8"))
    if not isinstance(config, dict) or "discriminator" not in config:
        return sha256_file(source / CONFIG_FILE)
    text = json.dumps({k: v for k, v in config.items() if k != "discriminator"}, indent=1, sort_keys=True) + "\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _factory_artifact(spec_in, artifacts_dir: Path) -> Artifact:

    spec = FactorySpec(factory=spec_in.factory, kwargs=spec_in.kwargs, z_dim=spec_in.z_dim,
                       text_dim=spec_in.text_dim, image_size=spec_in.image_size)
    trust(spec.factory)  # the recipe names it: its steps' folders (here and in bench workers) may call it
    weights = Path(spec_in.weights)
    dataset, dataset_from = input_dataset(spec_in, {})
    digest = stable_hash({"spec": spec.model_dump(), "weights": sha256_file(weights), "dataset": dataset})
    folder = artifacts_dir / f"00-input-{digest}"
    existing = reuse_artifact(folder)
    if existing is not None:
        return existing
    model = build(spec)
    load_weights_into(model, weights)
    prove_spec(model, spec)  # one forward with the declared widths, before any pass runs
    with atomic_dir(folder) as tmp:
        write_user_generator(tmp, model, spec, meta={"weights": str(weights), "data": dataset})
        write_manifest(tmp, id=digest, parent_id=None, format=Format.TORCH,
                       producer={"pass": "input", "factory": spec.factory, "kwargs": spec.kwargs, "weights": str(weights)},
                       io=io_spec(model), dataset=dataset, lineage=[{"pass": "input", "id": digest}],
                       meta={"dataset_from": dataset_from})
    return load_artifact(folder)


def run(
    recipe: Recipe,
    run_dir: Path,
    *,
    on_event: Callable[[Event], None] | None = None,
    store: Path | None = None,
) -> RunResult:
    """Execute every step (reusing intact finished ones) and write ``run.json``; raises on a failed step.

    ``store``: a folder of finished artifacts shared by run folders (``$COMPRESSKIT_STORE`` when None; no store
    when neither): a step found there is copied in, one computed here is published there.
    Under ``torchrun`` every rank calls this: rank 0 decides, runs and writes; a pass that declares
    ``distributed`` (distill) runs on every rank at once, any other on rank 0 while the rest wait.
    """
    with process_group() as world, torch_threads(world.threads(recipe.threads)):
        with run_lock(run_dir) if world.is_main else contextlib.nullcontext():  # one owner per run folder
            return _run(recipe, run_dir, on_event, world, store)


def _run(recipe: Recipe, run_dir: Path, on_event: Callable[[Event], None] | None, world: World,
         store: Path | None = None) -> RunResult:
    emit = on_event or (lambda event: None)
    shared = ArtifactStore.opened(store, lambda message: emit(Event("log", message=message))) if world.is_main else None
    run_dir = Path(run_dir)
    artifacts_dir = run_dir / ARTIFACTS
    with main_first(world):  # rank 0 prepares the folder and the input artifact; the others then read it
        if world.is_main:
            artifacts_dir.mkdir(parents=True, exist_ok=True)
            for stale in artifacts_dir.glob(".*.tmp"):  # a dead run's half-written step (we hold the lock): removed
                shutil.rmtree(stale, ignore_errors=True)
            with disk_full_said("the run's recipe.yaml", run_dir), atomic_file(run_dir / "recipe.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(recipe.resolved(), sort_keys=False), encoding="utf-8")
        with disk_full_said("the input's copy", artifacts_dir):
            root = input_artifact(recipe.input, artifacts_dir)
    ctx = PassContext(run_dir=run_dir, seed=recipe.seed, threads=world.threads(recipe.threads), teacher=root,
                      log=lambda message: emit(Event("log", message=message)),
                      progress=lambda done, total, stats: emit(Event("progress", done=done, total=total, stats=stats)))
    if root.meta.get("dataset_from", "").startswith("default"):
        emit(Event("log", message=f"the input names no dataset: calibrating and scoring with {root.dataset['name']} "
                                  "(set input.data in the recipe to choose)"))
    records: list[StepRecord] = []
    current = root
    failure: BaseException | None = None
    try:
        for step in recipe.steps:
            cls = pass_class(step.name)
            config = step.config.model_dump(mode="json")
            output_id = pass_output_id(cls, step.name, config, current.id, root, seed=recipe.seed)
            folder = artifacts_dir / f"{step.index + 1:02d}-{step.name}-{output_id}"
            emit(Event("start", step=step.index + 1, name=step.name, id=output_id))
            started = time.perf_counter()
            step_ctx = ctx.for_step(current, cls.needs, run_dir / "scratch" / folder.name)
            try:
                with disk_full_said(f"step {step.index + 1} ({step.name})", artifacts_dir):
                    produced, cached = _step(cls, step, current, folder, output_id, step_ctx, world, emit, shared)
            except CompresskitError as exc:
                records.append(StepRecord(step.index + 1, step.name, current.id, output_id, str(folder), False,
                                          round(time.perf_counter() - started, 3), "failed", error=str(exc)))
                raise
            records.append(StepRecord(step.index + 1, step.name, current.id, output_id, str(folder), cached,
                                      round(time.perf_counter() - started, 3), "cached" if cached else "done",
                                      produced.meta))
            emit(Event("done", step=step.index + 1, name=step.name, id=output_id, record=records[-1]))
            current = produced
    except BaseException as exc:
        failure = exc
        raise
    finally:
        if world.is_main:
            try:
                with disk_full_said("the run's summary run.json", run_dir):
                    _write_run_json(run_dir, recipe, root, records)
            except DiskFull:
                if failure is None:  # else the step's own error is the one to say (run.json keeps its last state)
                    raise
    if world.is_main:
        _link_final(run_dir, current.path)
    return RunResult(run_dir, root, records, current)


def _link_final(run_dir: Path, final: Path) -> None:
    """``RUN_DIR/final`` -> the last step's artifact (a relative link, replaced atomically), so a user can
    write ``compresskit generate "caption" --model RUN_DIR/final`` or copy the bundle with ``cp -rL``."""
    link, tmp = run_dir / FINAL, run_dir / f".{FINAL}.tmp"
    tmp.unlink(missing_ok=True)
    if link.is_dir() and not link.is_symlink():  # a copied run folder: its link became a copy of an old artifact
        shutil.rmtree(link)
    os.symlink(os.path.relpath(final, run_dir), tmp)
    os.replace(tmp, link)


def _step(cls, step, current: Artifact, folder: Path, output_id: str, ctx: PassContext, world: World, emit,
          shared: ArtifactStore | None = None) -> tuple[Artifact, bool]:
    """Reuse the step's intact artifact (the run folder's, else a copy of the store's) or run its pass; returns
    (artifact, cached). A pass that runs holds the machine for building; its artifact is then published to the store.

    Under torchrun rank 0 checks the cache and writes the artifact; the other ranks join a distributed
    pass with a throwaway output folder, wait for rank 0 otherwise, then read rank 0's artifact.
    """
    def log(message: str) -> None:
        emit(Event("log", message=message))

    key = f"{step.name}-{output_id}"
    with shared.claim(key) if shared is not None else contextlib.nullcontext():  # one builder per id (rank 0 only)
        produced = reuse_artifact(folder, log) if world.is_main else None
        if shared is not None and produced is None:
            produced = shared.fetch(key, folder)
            if produced is not None:
                log(f"{key} copied from the store {shared.root}")
        elif shared is not None and not shared.has(key):
            shared.publish(folder, key)  # made here before the run had a store
        cached = world.broadcast(float(produced is not None)) == 1.0
        if not cached:
            if world.is_main:
                with building(log):
                    produced = produce(cls, step.name, step.config, current, folder, output_id, ctx)
            elif cls.distributed:
                with building(), tempfile.TemporaryDirectory() as discarded:
                    cls(step.config).run(current, Path(discarded), ctx.for_step(current, cls.needs, ctx.scratch))
            world.barrier()
            if world.is_main:
                shutil.rmtree(ctx.scratch, ignore_errors=True)
                if shared is not None:
                    shared.publish(folder, key)
    return (produced if produced is not None else load_artifact(folder)), cached


def _write_run_json(run_dir: Path, recipe: Recipe, root: Artifact, records: list[StepRecord]) -> None:
    failed = next((r for r in records if r.status == "failed"), None)
    summary = {
        "recipe": recipe.resolved(), "recipe_hash": stable_hash(recipe.resolved()), "input_id": root.id,
        "status": "failed" if failed else "done", "failed_step": failed.step if failed else None,
        "steps": [dataclasses.asdict(r) for r in records],
    }
    with atomic_file(run_dir / "run.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8")
