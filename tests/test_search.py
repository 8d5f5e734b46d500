"""Recipe search (compresskit.recipe_search): the space's validation, trial -> recipe, constraints from gates, the
study's storage (SQLite resume after a kill; PostgreSQL with two workers, one killed) and the front's files.

The end-to-end searches run tiny trials (emoji32-tiny, a prune and an ONNX export, a light bench: ~8 s each).
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from compresskit.bench.schema import GateResult
from compresskit.errors import RecipeError
from compresskit.recipe import parse_recipe
from compresskit.recipe_search import SearchError, load_space, parse_space, search, write_front
from compresskit.recipe_search.storage import open_storage
from compresskit.recipe_search.study import gate_constraints, open_study, storage_url, summarize

LIGHT_BENCH = {"candidates": ["final"],
               "speed": {"threads": [1], "batch_sizes": [1], "rounds": 2, "per_round": 3, "warmup": 1, "warmup_s": 0,
                         "e2e": False, "probe": False, "peak": False, "exported_teacher": False},
               "quality": {"n": 16, "candidates": ["final"], "diversity_captions": 4}}
TINY = {"name": "tiny-search",
        "search": {"trials": 2, "sampler": "random",
                   "objectives": [{"metric": "speedup_vs_baseline"}, {"metric": "psnr_vs_teacher"}]},
        "input": {"model": "emoji32-tiny"}, "seed": 0, "threads": 1,
        "steps": [{"sanitize": {}}, {"prune": {"ratio": 0.5, "importance": "l1", "round_to": 2}},
                  {"export_onnx": {"opset": {"choice": [17, 18]}}}],
        "bench": LIGHT_BENCH,
        "gates": [{"metric": "params", "goal": "percent_min_improvement", "value": 40}]}


def _space(**changes) -> dict:
    raw = copy.deepcopy(TINY)
    raw.update(changes)
    return raw


def _with_step(index: int, step: dict) -> dict:
    raw = _space()
    raw["steps"][index] = step
    return raw


# --- the space ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("step, message", [
    ({"prune": {"ratio": {"range": [0.6, 0.2]}}}, "range [0.6, 0.2] is empty: low must be below high"),
    ({"prune": {"ratio": {"range": [0.2]}}}, "range needs two finite numbers [low, high]"),
    ({"prune": {"ratio": {"range": [0.1, 0.5], "stpe": 0.1}}}, "did you mean 'step'"),
    ({"prune": {"ratio": {"range": [0.0, 0.5], "log": True}}}, "a log range needs low > 0"),
    ({"prune": {"ratio": {"range": [0.1, 0.5], "step": -1}}}, "step must be a positive number"),
    ({"prune": {"ratio": {"choice": []}}}, "choice needs a non-empty list"),
    ({"prune": {"ratoi": {"range": [0.1, 0.5]}}}, "ratio"),  # the recipe's own did-you-mean, at a corner
    ({"prune": {"ratio": {"range": [0.5, 1.5]}}}, "prune.ratio=1.5"),  # the high end is out of the pass's bounds
    ({"export_onnx": {"opset": {"choice": [16, 17]}}}, "export_onnx.opset=16"),
])
def test_a_bad_space_is_one_line_naming_the_value(step, message):
    with pytest.raises(RecipeError) as info:
        parse_space(_with_step(1 if "prune" in step else 2, step), "space.yaml")
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("space.yaml")


def test_bad_search_settings_and_plain_recipes_are_refused():
    with pytest.raises(RecipeError, match="did you mean 'r_precision'"):
        parse_space(_space(search={"objectives": [{"metric": "r_precison"}]}), "s.yaml")
    with pytest.raises(RecipeError, match="sampler"):
        parse_space(_space(search={"sampler": "grid"}), "s.yaml")
    with pytest.raises(RecipeError, match="nothing to search"):
        parse_space(_with_step(2, {"export_onnx": {"opset": 17}}), "s.yaml")
    with pytest.raises(RecipeError, match="search.full names 'distill.schedule.steps'"):
        parse_space(_space(search={"full": {"distill.schedule.steps": 100}}), "s.yaml")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "recipes" / "search").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_search_spaces_are_valid(path):
    space = load_space(path)
    assert space.params and space.settings.start  # each is judged against the recipe it would replace


def test_cli_refuses_a_bad_space_with_one_line_and_exit_2(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(_with_step(1, {"prune": {"ratio": {"range": [0.6, 0.2]}}})))
    result = subprocess.run([sys.executable, "-m", "compresskit", "search", str(path), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: prune.ratio: range [0.6, 0.2] is empty: low must "
                                                  "be below high"]
    assert not (tmp_path / "o").exists()  # nothing made for a space that cannot run


def test_a_trial_becomes_an_ordinary_recipe_and_back():
    raw = _space(search={"n": 40, "full": {"prune.round_to": 4}})
    raw["steps"] = [{"sanitize": {}},
                    {"prune": {"ratio": {"range": [0.25, 0.75], "step": 0.25}, "importance": {"choice": ["l1", "l2"]},
                               "round_to": {"range": [1, 8], "log": True}}},
                    {"choice": [{"export_onnx": {"opset": 17}}, {"export_onnx": {"opset": 18}}]}]
    space = parse_space(raw, "space.yaml")
    assert [p.name for p in space.params] == ["prune.ratio", "prune.importance", "prune.round_to", "steps.2"]
    assert [p.kind for p in space.params] == ["float", "choice", "int", "choice"]
    fixed = optuna.trial.FixedTrial({"prune.ratio": 0.5, "prune.importance": 1, "prune.round_to": 4, "steps.2": 0})
    values = {p.name: p.suggest(fixed) for p in space.params}
    assert values == {"prune.ratio": 0.5, "prune.importance": "l2", "prune.round_to": 4,
                      "steps.2": {"export_onnx": {"opset": 17}}}
    recipe = space.trial_recipe(values, "t-0001")
    assert recipe["steps"][1] == {"prune": {"ratio": 0.5, "importance": "l2", "round_to": 4}}
    assert recipe["steps"][2] == {"export_onnx": {"opset": 17}}
    assert recipe["bench"]["quality"]["split"] == "val" and recipe["bench"]["quality"]["n"] == 40  # never eval
    parsed = parse_recipe(recipe, "trial")
    assert [s.name for s in parsed.steps] == ["sanitize", "prune", "export_onnx"]
    front = space.front_recipe(values, "front-1")
    assert front["steps"][1]["prune"]["round_to"] == 4 and front["bench"]["quality"].get("split", "eval") == "eval"
    assert space.template["steps"][1]["prune"]["ratio"] == {"range": [0.25, 0.75], "step": 0.25}  # untouched
    # Optuna's stored value (a choice's index) maps back to the same recipe value
    by_name = {p.name: p for p in space.params}
    assert by_name["prune.importance"].value_of(1) == "l2"


def test_start_trials_are_checked_and_run_first(tmp_path):
    with pytest.raises(RecipeError, match="export_onnx.opset = 16 is none of its choices"):
        parse_space(_space(search={"start": [{"export_onnx.opset": 16}]}), "s.yaml")
    with pytest.raises(RecipeError, match="did you mean 'export_onnx.opset'"):
        parse_space(_space(search={"start": [{"export_onnx.opsett": 17}]}), "s.yaml")
    space = parse_space(_space(search={"start": [{"export_onnx.opset": 18}]}), "s.yaml")
    url, _ = storage_url(None, tmp_path)
    study = open_study(space, url, "s", heartbeat=5, seed=0)
    [queued] = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert queued.system_attrs["fixed_params"] == {"export_onnx.opset": 1}  # the choice's index: 18
    open_study(space, url, "s", heartbeat=5, seed=0)  # a second worker does not queue it again
    assert len(study.get_trials()) == 1


def _gate(passed, observed, threshold, direction="higher"):
    return GateResult(metric="r_precision", goal="threshold", value=threshold, candidate="final", passed=passed,
                      observed=observed, threshold=threshold, direction=direction)


def test_gates_become_constraints_positive_when_missed():
    values = gate_constraints([_gate(True, 0.8, 0.7), _gate(False, 0.6, 0.75), _gate(False, 12.0, 10.0, "lower"),
                               _gate(True, 9.0, 10.0, "lower"), _gate(False, None, 0.7),
                               _gate(False, 0.7, 0.7)])  # a marginal miss right on the threshold is still a miss
    assert values[0] == pytest.approx(-0.1 / 0.7) and values[1] == pytest.approx(0.2)
    assert values[2] == pytest.approx(0.2) and values[3] == pytest.approx(-0.1)
    assert values[4] == 1.0 and values[5] > 0


def test_infeasible_trials_are_kept_and_marked_but_not_on_the_front(tmp_path):
    space = parse_space(_space(), "space.yaml")
    url, _ = storage_url(None, tmp_path)
    study = open_study(space, url, "s", heartbeat=5, seed=0)
    distribution = optuna.distributions.CategoricalDistribution([0, 1])
    for values, constraints in [([9.0, 40.0], [0.3]), ([5.0, 30.0], [-0.1]), ([4.0, 20.0], [-0.2])]:
        study.add_trial(optuna.trial.create_trial(values=values, params={"export_onnx.opset": 0},
                                                  distributions={"export_onnx.opset": distribution},
                                                  user_attrs={"constraints": constraints}))
    summary = summarize(study, url)
    assert summary.complete == 3 and summary.feasible == 2
    assert [t["number"] for t in summary.front] == [1]  # trial 0 dominates but misses a gate
    assert [t["feasible"] for t in summary.trials] == [False, True, True]


def test_a_study_measured_on_another_cpu_kind_is_refused(tmp_path, monkeypatch):
    space = parse_space(_space(), "space.yaml")
    url, _ = storage_url(None, tmp_path)
    open_study(space, url, "s", heartbeat=5, seed=0)
    from compresskit.recipe_search import study as study_module

    monkeypatch.setattr(study_module, "machine_key", lambda: {"cpu": "Other CPU", "isa_label": "AVX2",
                                                              "fingerprint": ["Other CPU", "AVX2", []]})
    with pytest.raises(SearchError, match="latencies of different CPU kinds do not compare"):
        open_study(space, url, "s", heartbeat=5, seed=0)


def test_storage_urls_are_checked():
    with pytest.raises(SearchError, match="not a study storage URL"):
        storage_url("mysql://x/y", Path("."))
    with pytest.raises(SearchError, match="cannot open the study storage postgresql://me@127.0.0.1:1/db"):
        from compresskit.recipe_search.study import open_storage

        open_storage("postgresql://me:secret@127.0.0.1:1/db", 5)


# --- searches that run trials -----------------------------------------------------------------------------------

def _trials(study) -> dict[str, list]:
    by_state: dict[str, list] = {}
    for t in study.get_trials(deepcopy=False):
        by_state.setdefault(t.state.name, []).append(t)
    return by_state


def test_a_search_runs_trials_reuses_their_shared_steps_and_writes_the_front(tmp_path):
    space = parse_space(_space(), "space.yaml")
    summary = search(space, trials=2, out=tmp_path / "s", heartbeat=5)
    assert summary.complete == 2 and summary.failed == 0 and summary.feasible == 2
    runs = [Path(t["run_dir"]) for t in summary.trials]
    # the second trial copied sanitize and prune (the shared prefix) from the store instead of computing them
    import json

    second = json.loads((runs[1] / "run.json").read_text())["steps"]
    assert [s["cached"] for s in second[:2]] == [True, True]
    assert "copied from the store" in (runs[1] / "run.log").read_text()
    for t in summary.trials:  # scored on val, each an ordinary run folder with its report
        report = json.loads((Path(t["run_dir"]) / "report.json").read_text())
        assert report["recipe"]["bench"]["quality"]["split"] == "val"
        assert t["values"][0] == report["candidates"][-1]["metrics"]["speedup_vs_baseline"]["value"]
    result = write_front(space, summary, tmp_path / "s")
    assert result["front_recipes"] and all(Path(p).is_file() for p in result["front_recipes"])
    front_recipe = yaml.safe_load(Path(result["front_recipes"][0]).read_text())
    assert parse_recipe(front_recipe, "front").bench.quality.split == "eval"  # re-run in full, judged on eval
    assert (tmp_path / "s" / "front.png").is_file() and (tmp_path / "s" / "compare" / "report.html").is_file()
    assert "| trial | state | front |" in (tmp_path / "s" / "search.md").read_text()
    # a second call with the same target finds the study done: no new trial
    again = search(space, trials=2, out=tmp_path / "s", heartbeat=5)
    assert again.complete == 2 and len(again.trials) == 2


def test_two_local_jobs_share_one_study_and_time_alone(tmp_path):
    raw = _space()
    raw["steps"][1] = {"prune": {"ratio": {"range": [0.25, 0.75], "step": 0.25}, "importance": "l1", "round_to": 2}}
    seen = []
    summary = search(parse_space(raw, "space.yaml"), trials=3, jobs=2, out=tmp_path / "s", heartbeat=5,
                     progress=seen.append)
    assert summary.complete >= 3 and summary.failed == 0 and summary.running == 0
    numbers = [t["number"] for t in summary.trials]
    assert len(numbers) == len(set(numbers))
    assert seen and seen[-1].complete == summary.complete  # the parent showed the workers' progress
    # every trial's timing waited for builds running beside it: no trial timed while the other built a step
    spans = {}
    for t in summary.trials:
        log = (Path(t["run_dir"]) / "run.log").read_text().splitlines()
        stamps = [(line[:19], line[20:]) for line in log]
        starts = {m.split(" (")[0]: a for a, m in stamps if m.startswith("step ") and m.endswith(" started")}
        builds = [(starts[m.split(" done in")[0]], a) for a, m in stamps if m.startswith("step ") and " done in " in m]
        timed = [a for a, m in stamps if m.startswith("speed at")]
        spans[t["number"]] = (builds, timed)
    for number, (_, timed) in spans.items():
        for other, (builds, _) in spans.items():
            if other != number:
                assert not any(a < at < b for at in timed for a, b in builds), (number, other)


def _search_cmd(space: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "compresskit", "search", str(space), "--out", str(out), "--heartbeat", "1", *extra]


def _kill_during_second_trial(proc: subprocess.Popen, out: Path, deadline_s: float = 240) -> None:
    """SIGKILL the worker (and its children) while its second trial runs a step."""
    log = out / "trials" / "0001" / "run.log"
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if log.is_file() and "step 3 export_onnx" in log.read_text():
            break
        if proc.poll() is not None:
            raise AssertionError(f"the worker ended before its second trial: {proc.stderr.read()}")
        time.sleep(0.2)
    else:
        raise AssertionError("the second trial never started")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_sqlite_search_resumes_after_a_kill(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(_space()))
    out = tmp_path / "s"
    proc = subprocess.Popen(_search_cmd(space, out, "--trials", "3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    _kill_during_second_trial(proc, out)
    time.sleep(3.5)  # past the grace period (3 heartbeats): the killed trial is stale
    result = subprocess.run(_search_cmd(space, out, "--trials", "3", "--json"), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny-search", storage=f"sqlite:///{out / 'study.db'}")
    trials = _trials(study)
    assert len(trials["COMPLETE"]) == 3 and [t.number for t in trials["FAIL"]] == [1]
    retried = [t for t in trials["COMPLETE"] if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].params == trials["FAIL"][0].params  # its parameters ran again
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers)) == 4


# --- PostgreSQL: two workers, one study --------------------------------------------------------------------------

def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).is_file():
            return str(root / name)
    return None


@pytest.fixture
def postgres():
    """A real PostgreSQL server in a temporary folder on a free loopback port; yields its URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("COMPRESSKIT_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (CI installs it: .ci/run)")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="compresskit-pg-"))  # not under pytest's folder: the server's user reads it
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "compresskit", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True,
                   timeout=120)
    try:
        subprocess.run([*as_user, _pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port), "-U",
                        "compresskit", "studies"], check=True, capture_output=True, timeout=60)
        yield f"postgresql://compresskit@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_through_postgresql_one_killed_make_one_study(tmp_path, postgres):
    space = tmp_path / "space.yaml"
    raw = _space()
    raw["steps"][1] = {"prune": {"ratio": {"range": [0.25, 0.75], "step": 0.25}, "importance": "l1", "round_to": 2}}
    space.write_text(yaml.safe_dump(raw))
    common = ("--storage", postgres, "--study", "shared", "--trials", "4")
    doomed = subprocess.Popen(_search_cmd(space, tmp_path / "a", *common), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    survivor = subprocess.Popen(_search_cmd(space, tmp_path / "b", *common), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # worker a runs trial numbers as the study hands them out: kill it while it runs any second trial of its own
        started = time.monotonic()
        while time.monotonic() - started < 300:
            logs = sorted((tmp_path / "a" / "trials").glob("*/run.log"))
            if len(logs) >= 2 and "step 3 export_onnx" in logs[-1].read_text():
                break
            assert doomed.poll() is None, doomed.stderr.read()
            time.sleep(0.2)
        else:
            raise AssertionError("worker a never started a second trial")
        killed_number = int(logs[-1].parent.name)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        _, err = survivor.communicate(timeout=900)
        assert survivor.returncode == 0, err
    finally:
        for proc in (doomed, survivor):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    study = optuna.load_study(study_name="shared", storage=postgres)
    trials = _trials(study)
    if "RUNNING" in trials:
        # the survivor may have finished its 4 trials before the killed trial's grace period (3 beats of 1 s) ran
        # out; the next worker to open the study fails it. That worker opens the storage as `search` does, with the
        # heartbeat: a storage without one (a plain URL) leaves stale trials alone.
        time.sleep(3.5)
        study = optuna.load_study(study_name="shared", storage=open_storage(postgres, heartbeat=1))
        optuna.storages.fail_stale_trials(study)
        trials = _trials(study)
    numbers = [t.number for t in study.get_trials()]
    assert len(numbers) == len(set(numbers))  # no duplicate
    assert len(trials.get("COMPLETE", [])) >= 4 and killed_number in [t.number for t in trials["FAIL"]]
    assert "RUNNING" not in trials  # no trial lost in between
    hosts = {t.user_attrs["run_dir"].split(os.sep)[-3] for t in trials["COMPLETE"]}
    assert hosts <= {"a", "b"} and "b" in hosts
    for t in trials["COMPLETE"]:
        assert Path(t.user_attrs["run_dir"], "report.json").is_file()


def test_workers_opening_a_fresh_postgresql_study_together_all_get_it(postgres):
    """Workers started together on an empty database race to create Optuna's tables: every one must open it."""
    code = ("import sys; from compresskit.recipe_search.storage import open_storage; "
            "open_storage(sys.argv[1], heartbeat=60); print('opened')")
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    results = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and out.strip() == "opened", err
