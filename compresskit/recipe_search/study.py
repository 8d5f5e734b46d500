"""A search as an Optuna study: each trial draws a recipe from the space, runs it (``api.run``, scored on val) and
reports the objectives; the recipe's gates are the study's constraints (infeasible trials are kept and marked).

The study lives in Optuna's relational storage: a SQLite file in the search folder by default, or a PostgreSQL URL
that workers on several machines share (``--storage postgresql://... --study NAME``). A running trial beats a
heartbeat; a worker that was killed stops beating, and the next worker to start a trial marks its trial failed
and queues its parameters once more (Optuna's ``RetryFailedTrialCallback``), so no trial is lost and none runs
twice to completion. Every trial's steps go through one artifact store (``STUDY_DIR/store``), so trials sharing
a prefix of steps compute it once; every latency is taken under the machine-wide measurement lock
(:mod:`compresskit.lock`), so parallel workers build side by side but never time while another builds.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.exceptions import ExperimentalWarning

from .. import hardware
from ..cache import atomic_file
from ..errors import CompresskitError
from .space import SearchSpace, load_space, parse_space
from .storage import SearchError, open_storage, safe_url, storage_url

HEARTBEAT_S = 30  # a running trial's heartbeat; after 3 missed beats another worker marks it failed
TRIALS_DIR, STORE_DIR = "trials", "store"


@dataclass
class Worker:
    """What one worker process needs to run trials of a study (picklable: ``--jobs`` spawns these)."""

    space_raw: dict
    space_source: str
    storage: str
    study: str
    out: str
    store: str
    trials: int
    timeout: float | None
    heartbeat: int
    job: int = 0
    shared: bool = False  # the storage is not this search folder's own SQLite file (other machines may join)


@dataclass
class Summary:
    """Where a study stands: trial counts by state, the Pareto front of feasible finished trials."""

    study: str
    storage: str
    directions: list[str]
    objectives: list[str]
    complete: int = 0
    running: int = 0
    failed: int = 0
    waiting: int = 0
    feasible: int = 0
    front: list[dict] = field(default_factory=list)  # one per front trial: number, values, params, run_dir
    trials: list[dict] = field(default_factory=list)  # every trial: number, state, values, feasible, run_dir

    def to_json(self) -> dict:
        return dict(vars(self))


def _sampler(space: SearchSpace, seed: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # multivariate, constant_liar, constraints_func
        return _new_sampler(space, seed)


def _new_sampler(space: SearchSpace, seed: int):
    settings = space.settings
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints_of,
                                             population_size=max(4, min(50, settings.trials // 3)))
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # a short search (tens of trials) needs TPE to start modelling early; constant liar keeps parallel workers apart
    return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints_of, constant_liar=True,
                                      n_startup_trials=max(2, min(10, settings.trials // 3)), multivariate=True)


def constraints_of(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna's constraints: one value a gate, > 0 where the gate failed (stored by the trial)."""
    return list(trial.user_attrs.get("constraints", []))


def gate_constraints(gates: list) -> list[float]:
    """One constraint a gate: the miss as a fraction of the threshold (> 0 failed, <= 0 passed)."""
    values = []
    for g in gates:
        if g.observed is None or g.threshold is None:
            values.append(0.0 if g.passed else 1.0)
            continue
        scale = abs(g.threshold) or 1.0
        miss = (g.threshold - g.observed if g.direction == "higher" else g.observed - g.threshold) / scale
        # the gate's own verdict decides (a marginal decision may sit on the threshold); the sign follows it
        values.append(max(miss, 1e-6) if not g.passed else min(miss, 0.0))
    return values


def machine_key() -> dict:
    """What every worker of one study must share: latencies of different CPU kinds do not compare."""
    info = hardware.machine_info()
    return {"cpu": info["cpu"], "isa_label": info["isa_label"],
            "fingerprint": json.loads(json.dumps(hardware.fingerprint(info)))}


def open_study(space: SearchSpace, url: str, name: str, heartbeat: int, seed: int) -> optuna.Study:
    """Create or load the study; refuse one whose objectives or CPU kind differ from this worker's."""
    storage = open_storage(url, heartbeat)
    directions = [o.goal for o in space.settings.objectives]
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                    sampler=_sampler(space, seed), load_if_exists=True)
    except ValueError as exc:  # the study exists with other directions
        raise SearchError(f"study {name!r} in {safe_url(url)}: {exc}; give another --study name") from None
    objectives = [o.label for o in space.settings.objectives]
    mine = machine_key()
    attrs = study.user_attrs
    if "objectives" not in attrs:
        study.set_user_attr("objectives", objectives)
        study.set_user_attr("space", space.name)
        for params in space.start_trials():  # run first, by whichever worker asks first
            study.enqueue_trial(params, skip_if_exists=True)
    elif attrs["objectives"] != objectives:
        raise SearchError(f"study {name!r} optimises {attrs['objectives']}, this space {objectives}; give another "
                          "--study name")
    if "machine" not in attrs:
        study.set_user_attr("machine", mine)
    elif attrs["machine"]["fingerprint"] != mine["fingerprint"]:
        theirs = attrs["machine"]
        raise SearchError(f"study {name!r} measures latency on {theirs['cpu']} ({theirs['isa_label']}), this machine "
                          f"is {mine['cpu']} ({mine['isa_label']}): latencies of different CPU kinds do not compare; "
                          "run this machine's workers on their own --study")
    return study


def trial_values(space: SearchSpace, report) -> list[float]:
    """The objectives' values in a trial's report; CompresskitError (trial failed) where one was not measured."""
    values = []
    for objective in space.settings.objectives:
        try:
            value = report.candidate(objective.candidate).value(objective.metric)
        except KeyError as exc:
            raise CompresskitError(str(exc.args[0])) from None
        if value is None:
            raise CompresskitError(f"the trial's report has no {objective.metric} for {objective.candidate}")
        values.append(float(value))
    return values


def _report_figures(report) -> dict:
    """What the front's table and plots show of a trial: its final and the references' latency and quality."""
    figures = {}
    for c in report.candidates:
        if c.final or c.name in ("baseline", "teacher_int8"):
            figures["final" if c.final else c.name] = {m: record.value for m, record in c.metrics.items()}
    return figures


class Objective:
    """Optuna's objective: run the trial's recipe in ``OUT/trials/NNNN`` and return the objectives' values."""

    def __init__(self, space: SearchSpace, worker: Worker, on_event: Callable | None = None):
        self.space, self.worker, self.on_event = space, worker, on_event

    def __call__(self, trial: optuna.Trial) -> list[float]:
        from .. import api  # the runner and its passes: imported by the worker that runs trials, not at search start

        values = {p.name: p.suggest(trial) for p in self.space.params}
        name = f"{self.space.name}-trial-{trial.number:04d}"
        run_dir = Path(self.worker.out) / TRIALS_DIR / f"{trial.number:04d}"
        recipe = self.space.trial_recipe(values, name)
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(run_dir.parent / f"{trial.number:04d}.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("host", socket.gethostname())
        started = time.monotonic()
        try:
            report = api.run(recipe, out=run_dir, gate=False, store=self.worker.store, progress=self.on_event)
        except CompresskitError as exc:  # the trial fails (one line kept with it); the study goes on
            trial.set_user_attr("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
        finally:
            trial.set_user_attr("seconds", round(time.monotonic() - started, 1))
        trial.set_user_attr("constraints", gate_constraints(report.gates))
        trial.set_user_attr("verdict", report.verdict)
        trial.set_user_attr("failed_gates", [f"{g.candidate} {g.metric}" for g in report.failed_gates])
        trial.set_user_attr("figures", _report_figures(report))
        try:
            return trial_values(self.space, report)
        except CompresskitError as exc:
            trial.set_user_attr("error", str(exc))
            raise


def _worker_seed(seed: int, job: int, shared: bool) -> int:
    """Each worker samples with its own seed: the space's seed for the first local one (a rerun draws alike)."""
    if not shared:
        return seed + job
    return (seed + job + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())) % 2**32


def finished(study: optuna.Study, trials: int) -> bool:
    """``trials`` finished and none queued (a killed trial's retry runs even past the target), or as many failed
    (a space whose every trial fails stops)."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    done = states.count(optuna.trial.TrialState.COMPLETE) >= trials
    return (done and optuna.trial.TrialState.WAITING not in states) or states.count(
        optuna.trial.TrialState.FAIL) >= max(3, trials)


def stop_when_done(trials: int) -> Callable:
    """A study callback: stop once the study is :func:`finished`."""

    def callback(study: optuna.Study, _trial) -> None:
        if finished(study, trials):
            study.stop()

    return callback


def work(worker: Worker, on_trial: Callable | None = None, on_event: Callable | None = None) -> None:
    """Run trials of the study until it has ``worker.trials`` finished ones or the timeout passes."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is one line in the summary, not a traceback
    space = parse_space(worker.space_raw, worker.space_source)
    study = open_study(space, worker.storage, worker.study, worker.heartbeat,
                       _worker_seed(space.settings.seed, worker.job, worker.shared))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # stable in practice since Optuna 2.9
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial: failed, its parameters queued again
    if finished(study, worker.trials):
        return
    callbacks = [stop_when_done(worker.trials)]
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial(trial))
    study.optimize(Objective(space, worker, on_event), timeout=worker.timeout, callbacks=callbacks,
                   catch=(CompresskitError, RuntimeError, MemoryError), gc_after_trial=True)


def _spawned(worker: Worker) -> None:  # a --jobs worker process
    try:
        work(worker)
    except CompresskitError as exc:
        raise SystemExit(f"error: worker {worker.job}: {exc}") from None


def summarize(study: optuna.Study, url: str) -> Summary:
    """Counts by state and the Pareto front of feasible finished trials (Optuna's ``best_trials``)."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    objectives = study.user_attrs.get("objectives", [])
    summary = Summary(study.study_name, safe_url(url), [d.name.lower() for d in study.directions], objectives)
    for t in trials:
        summary.complete += t.state == states.COMPLETE
        summary.running += t.state == states.RUNNING
        summary.failed += t.state == states.FAIL
        summary.waiting += t.state == states.WAITING
        feasible = t.state == states.COMPLETE and all(c <= 0 for c in constraints_of(t))
        summary.feasible += feasible
        summary.trials.append({"number": t.number, "state": t.state.name.lower(), "values": t.values,
                               "params": t.params, "feasible": feasible, "run_dir": t.user_attrs.get("run_dir"),
                               "failed_gates": t.user_attrs.get("failed_gates", []), "error": t.user_attrs.get("error"),
                               "figures": t.user_attrs.get("figures", {}), "seconds": t.user_attrs.get("seconds"),
                               "retry_of": t.system_attrs.get("failed_trial")})
    summary.front = pareto_front([row for row in summary.trials if row["feasible"]], summary.directions)
    return summary


def pareto_front(rows: list[dict], directions: list[str]) -> list[dict]:
    """The rows (feasible finished trials) no other row dominates: at least as good in every objective, better
    in one. Every sampler's study is judged alike (Optuna's own front knows constraints only from some samplers)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]

    def dominates(a: list[float], b: list[float]) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    return [row for row in rows if not any(dominates(other["values"], row["values"]) for other in rows if other is not row)]


def search(space: SearchSpace | str | Path | dict, *, trials: int | None = None, timeout: float | None = None,
           storage: str | None = None, study: str | None = None, jobs: int = 1, out: str | Path | None = None,
           store: str | Path | None = None, heartbeat: int = HEARTBEAT_S,
           progress: Callable[[Summary], None] | None = None, on_event: Callable | None = None) -> Summary:
    """Search a space of recipes for the Pareto front of its objectives; see :mod:`compresskit.recipe_search`.

    Args:
        space: a search space (YAML path, mapping or :class:`~compresskit.recipe_search.space.SearchSpace`).
        trials: finished trials to stop at, all workers together [the space's ``search.trials``].
        timeout: seconds after which a worker starts no new trial [none].
        storage: ``sqlite:///PATH`` or ``postgresql://USER@HOST/DB`` [``OUT/study.db``].
        study: the study's name in the storage [the space's name].
        jobs: worker processes on this machine (they build in parallel, time one at a time).
        out: the search folder: trial run folders, the artifact store, the front [``runs/search-<name>``].
        store: the artifact store trials share [``OUT/store``].
        heartbeat: seconds between a running trial's heartbeats (a trial silent for 3 of them is failed).
        progress: called with a :class:`Summary` after each trial (and every few seconds with ``jobs`` > 1).
        on_event: the runner's events of the trial in progress (``jobs`` == 1).

    Returns:
        The study's :class:`Summary` once the workers stopped (the front's files: :func:`~compresskit.recipe_search.front.write_front`).
    """
    if not isinstance(space, SearchSpace):
        space = parse_space(space, str(space.get("name", "space"))) if isinstance(space, dict) else load_space(space)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if jobs < 1:
        raise SearchError(f"--jobs is at least 1, got {jobs}")
    if heartbeat < 1:
        raise SearchError(f"--heartbeat is at least 1 second, got {heartbeat}")
    folder = Path(out) if out is not None else Path("runs") / f"search-{space.name}"
    if folder.exists() and not folder.is_dir():
        raise SearchError(f"the search folder {folder} is a file; give a folder (it is created if missing)")
    folder.mkdir(parents=True, exist_ok=True)
    url, shared = storage_url(storage, folder)
    name = study or space.name
    target = trials or space.settings.trials
    worker = Worker(space.template | {"search": space.settings.model_dump(mode="json")}, space.source, url, name,
                    str(folder.resolve()), str(Path(store).resolve() if store else (folder / STORE_DIR).resolve()),
                    target, timeout, heartbeat, 0, shared)
    opened = open_study(space, url, name, heartbeat, space.settings.seed)  # refuses a mismatch before any work
    report = (lambda _trial: progress(summarize(opened, url))) if progress else None
    if jobs == 1:
        work(worker, on_trial=report, on_event=on_event)
    else:
        _run_jobs(worker, jobs, lambda: progress(summarize(opened, url)) if progress else None)
    return summarize(opened, url)


def _run_jobs(worker: Worker, jobs: int, poll: Callable[[], None]) -> None:
    """``jobs`` worker processes on one study; this process shows progress until they end."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_spawned, args=(Worker(**{**vars(worker), "job": j}),), daemon=False)
                 for j in range(jobs)]
    for p in processes:
        p.start()
    try:
        while any(p.is_alive() for p in processes):
            poll()
            for p in processes:
                p.join(timeout=2 / jobs)
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()
                p.join(timeout=30)
    poll()
    failed = [j for j, p in enumerate(processes) if p.exitcode not in (0, None)]
    if failed and len(failed) == jobs:
        raise SearchError(f"every worker stopped with an error (exit codes {[p.exitcode for p in processes]}); "
                          "see their lines above")
