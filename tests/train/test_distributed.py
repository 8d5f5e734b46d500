"""Training and distillation under torchrun: 2 gloo processes on CPU, checked against one process.

Every 2-process job here goes through the user's entry point (``--nproc-per-node 2``, which launches
``torchrun --standalone``), with the tiny config in fp32 (bf16 off) so one and two processes can be
compared tightly. ``log_every: 1`` makes the loop compare the ranks' weight hashes after every step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from compresskit.train import load_train_config, train
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes" / "train" / "emoji32-tiny.yaml"
# Adam moves a weight by at most ~lr per step, so float-sum differences between one and two processes
# stay far below steps * lr; a different global batch moves weights by about that much (checked below)
TOLERANCE = 1e-3


def _config(tmp_path: Path, name: str, **update) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw.update({"bf16": False, "log_every": 1, "threads": 2, **update})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _max_diff(a: Path, b: Path, file: str) -> float:
    x, y = load_file(str(a / file)), load_file(str(b / file))
    assert x.keys() == y.keys()
    return max((x[k].double() - y[k].double()).abs().max().item() for k in x if x[k].is_floating_point())


def _identical(a: Path, b: Path, file: str) -> bool:
    x, y = load_file(str(a / file)), load_file(str(b / file))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The tiny config trained 6 steps: in one process, in two, and in one with the per-rank batch."""
    tmp = tmp_path_factory.mktemp("ddp")
    one, two, per_rank = tmp / "one", tmp / "two", tmp / "per-rank"
    train(load_train_config(_config(tmp, "tiny")), one)
    train(load_train_config(_config(tmp, "tiny-half-batch", batch_size=8)), per_rank)
    result = run_cli("train", str(_config(tmp, "tiny")), "--out", str(two), "--nproc-per-node", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes" in result.stderr
    return {"tmp": tmp, "one": one, "two": two, "per_rank": per_rank}


def test_two_processes_match_one_process_on_the_same_global_batch(runs):
    state = "checkpoints/step-0000006/train_state.safetensors"  # G, D, EMA and both Adam states
    assert _max_diff(runs["one"], runs["two"], state) < TOLERANCE
    assert _max_diff(runs["one"], runs["two"], "final/model.safetensors") < TOLERANCE
    # the tolerance can fail: one process on the per-rank batch (8, not 16) lands far outside it
    assert _max_diff(runs["one"], runs["per_rank"], state) > 10 * TOLERANCE
    logs = [[yaml.safe_load(line) for line in (runs[k] / "log.jsonl").read_text().splitlines()] for k in ("one", "two")]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(*logs):  # the logged losses are means over ranks: the one-process losses
        for key in ("loss_d", "loss_g", "mse"):
            assert abs(a[key] - b[key]) < 1e-4, (a["step"], key)


def test_only_rank_zero_writes_and_the_checkpoint_says_how_many_processes(runs):
    two = runs["two"]
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    assert len((two / "log.jsonl").read_text().splitlines()) == 6  # one line per step, not one per rank
    meta = yaml.safe_load((two / "final" / "config.json").read_text())["meta"]
    assert meta["processes"] == 2 and meta["step"] == 6


def test_resume_under_two_processes_continues_at_the_saved_step(runs):
    tmp, out = runs["tmp"], runs["tmp"] / "resumed"
    first = run_cli("train", str(_config(tmp, "tiny-3", steps=3)), "--out", str(out), "--nproc-per-node", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli("train", str(_config(tmp, "tiny")), "--out", str(out), "--nproc-per-node", "2", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "steps 3->6" in again.stderr
    # an interrupted and resumed 2-process run is the uninterrupted one, bit for bit
    assert _identical(out, runs["two"], "checkpoints/step-0000006/train_state.safetensors")
    assert _identical(out, runs["two"], "final/model.safetensors")


def test_a_global_batch_that_does_not_split_evenly_is_refused_before_launch(tmp_path):
    result = run_cli("train", str(_config(tmp_path, "odd", batch_size=15)), "--out", str(tmp_path / "x"),
                     "--nproc-per-node", "2")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "multiple of 2" in result.stderr
    assert not (tmp_path / "x").exists()


def test_the_sync_check_catches_ranks_whose_weights_differ(tmp_path):
    script = tmp_path / "drift.py"
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        from compresskit.errors import DistributedJobFailed
        from compresskit.train.distributed import process_group
        with process_group(timeout_s=60) as world:
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 4)
            world.check_in_sync({{"m": model}}, step=1)  # identical: passes
            if world.rank == 1:
                with torch.no_grad():
                    model.weight[0, 0] += 1e-7
            try:
                world.check_in_sync({{"m": model}}, step=2)
            except DistributedJobFailed as exc:
                open(r"{tmp_path}/caught-%d" % world.rank, "w").write(str(exc))
    """))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    messages = [(tmp_path / f"caught-{rank}").read_text() for rank in (0, 1)]
    assert all("after step 2 ranks [1] hold different weights" in m for m in messages)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _workers(launcher: subprocess.Popen, timeout_s: float = 120) -> list[int]:
    """The two torchrun workers under the compresskit launcher (launcher -> torchrun -> 2 workers)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        agents = _children(launcher.pid)
        workers = [w for agent in agents for w in _children(agent)]
        if len(workers) == 2:
            return sorted(workers)
        time.sleep(0.2)
    raise AssertionError("torchrun did not start two workers")


@pytest.mark.parametrize("failure", ["killed", "hung"])
def test_a_rank_that_dies_or_hangs_fails_the_job_instead_of_hanging(tmp_path, failure):
    config = _config(tmp_path, "long", steps=100_000, log_every=5, checkpoint_every=5, sample_every=100_000)
    out = tmp_path / "out"
    launcher = subprocess.Popen([sys.executable, "-m", "compresskit", "train", str(config), "--out", str(out),
                                 "--nproc-per-node", "2", "--timeout", "10"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        workers = _workers(launcher)
        deadline = time.monotonic() + 120
        while not (out / "checkpoints").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)  # training is under way (a checkpoint exists)
        os.kill(workers[1], signal.SIGKILL if failure == "killed" else signal.SIGSTOP)
        started = time.monotonic()
        _, stderr = launcher.communicate(timeout=150)
        seconds = time.monotonic() - started
    finally:
        for pid in workers if "workers" in locals() else []:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("error: the 2-process job failed")
    if failure == "hung":  # rank 0 gives up after --timeout and says so in one line
        assert "lost contact with the other ranks" in stderr
    # killed: torchrun stops the group at once; hung: the 10 s collective timeout, then torchrun's
    # SIGTERM grace period (30 s) for the stopped worker
    assert seconds < (30 if failure == "killed" else 90), seconds
    assert any((out / "checkpoints").iterdir())  # the last good checkpoint survives for --resume


def test_distill_pass_under_two_processes_matches_one_process(tmp_path):
    from compresskit.recipe import load_recipe
    from compresskit.runner import run

    recipe = tmp_path / "distill.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "ddp-distill", "input": {"model": "emoji32-tiny"}, "seed": 0, "threads": 2,
        "steps": [{"distill": {"student": {"kind": "slim", "width": 0.5},
                               "schedule": {"steps": 6, "batch_size": 8, "captions": 64},
                               "validation": {"size": 16, "every": 3}, "bf16": False,
                               "losses": {"pixel": 1.0, "feature": 1.0, "adversarial": 0.1}}},
                  {"export_onnx": {}}],
    }))
    one = run(load_recipe(recipe), tmp_path / "one")
    result = run_cli("run", str(recipe), "--out", str(tmp_path / "two"), "--no-bench", "--nproc-per-node", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = yaml.safe_load((tmp_path / "two" / "run.json").read_text())
    assert [s["status"] for s in summary["steps"]] == ["done", "done"]
    distill_one, distill_two = Path(one.steps[0].path), Path(summary["steps"][0]["path"])
    assert distill_one.name == distill_two.name  # same recipe, same artifact id
    assert yaml.safe_load((distill_two / "manifest.json").read_text())["meta"]["processes"] == 2
    assert _max_diff(distill_one, distill_two, "model.safetensors") < TOLERANCE
    history = [yaml.safe_load((d / "distill_history.json").read_text()) for d in (distill_one, distill_two)]
    assert [h["step"] for h in history[0]] == [h["step"] for h in history[1]] == [0, 3, 6]
    assert all(abs(a["val_l1"] - b["val_l1"]) < 1e-4 for a, b in zip(*history))
    # rank 0 alone wrote: one folder per step, no leftovers from the other rank
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "two" / "artifacts").iterdir()) == \
        ["distill", "export_onnx", "input"]
