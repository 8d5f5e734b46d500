"""Reliability: corrupt files are caught and rebuilt, a SIGKILLed run loses no finished step, runs repeat bit for bit."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from compresskit.artifact import load_artifact
from compresskit.errors import ArtifactError
from compresskit.models import create_generator, save_model
from compresskit.recipe import parse_recipe
from compresskit.runner import run

EXPORT_STEPS = [{"sanitize": {}}, {"export_onnx": {}}, {"export_openvino": {}}]
TARGETS = [("01-sanitize", "model.safetensors"), ("02-export_onnx", "model.onnx"),
           ("03-export_openvino", "model.bin"), ("03-export_openvino", "model.xml")]


def _generator(folder: Path, seed: int, ngf: int = 4) -> Path:
    torch.manual_seed(seed)
    return save_model(folder, create_generator(ngf=ngf, text_hidden=16, fuse_hidden=8))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A finished export run of one tiny generator, and one of a wider one (source of swapped files)."""
    root = tmp_path_factory.mktemp("integrity")
    model = _generator(root / "g0", 0)
    run(parse_recipe({"input": {"model": str(model)}, "steps": EXPORT_STEPS}, "r.yaml"), root / "run")
    other = _generator(root / "g1", 1, ngf=6)
    run(parse_recipe({"input": {"model": str(other)}, "steps": EXPORT_STEPS}, "r.yaml"), root / "other")
    return model, root / "run", root / "other"


def _folder(run_dir: Path, prefix: str) -> Path:
    return next((run_dir / "artifacts").glob(f"{prefix}-*"))


def _corrupt(path: Path, how: str, donor: Path) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x01
        path.write_bytes(bytes(flipped))
    else:  # swapped for the same file of another model
        assert donor.read_bytes() != data
        shutil.copyfile(donor, path)


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "swapped"])
@pytest.mark.parametrize(("step", "name"), TARGETS, ids=[f"{s}/{n}" for s, n in TARGETS])
def test_corrupted_files_are_named_and_their_step_rebuilt(two_runs, tmp_path, step, name, how):
    model, finished, other = two_runs
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    target = _folder(run_dir, step) / name
    _corrupt(target, how, _folder(other, step) / name)
    with pytest.raises(ArtifactError, match=f"{name} does not match its manifest checksum"):
        load_artifact(target.parent)
    events = []
    again = run(parse_recipe({"input": {"model": str(model)}, "steps": EXPORT_STEPS}, "r.yaml"), run_dir,
                on_event=events.append)
    index = int(step[:2]) - 1
    assert again.steps[index].status == "done", "the corrupted step is rebuilt"
    assert all(r.status == "cached" for i, r in enumerate(again.steps) if i != index), "nothing else is redone"
    assert any(f"rebuilding {target.parent.name}" in (e.message or "") for e in events)
    assert (target.read_bytes() == (_folder(finished, step) / name).read_bytes()), "rebuilt bit for bit"


KILL_RECIPE = {"name": "killed", "seed": 0, "threads": 1, "steps": [
    {"sanitize": {}}, {"prune": {"ratio": 0.5, "importance": "l1", "round_to": 2}},
    {"distill": {"schedule": {"steps": 400, "batch_size": 8, "captions": 64},
                 "validation": {"size": 16, "every": 50, "checkpoint_every": 25, "patience": 100}}},
    {"export_onnx": {}}, {"export_openvino": {}}]}


def _finished_steps(run_dir: Path) -> dict[str, tuple[str, int]]:
    """Every visible artifact folder -> (manifest id, manifest mtime), each checked in full (a partial one
    would raise); an unchanged mtime later means the step was not redone."""
    found = {}
    for folder in sorted((run_dir / "artifacts").iterdir()) if (run_dir / "artifacts").exists() else []:
        if not folder.name.startswith("."):
            found[folder.name] = (load_artifact(folder).id, (folder / "manifest.json").stat().st_mtime_ns)
    return found


def _distill_checkpoint_step(run_dir: Path) -> int:
    states = list(run_dir.glob("scratch/*-distill-*/checkpoint/train_state.json"))
    return json.loads(states[0].read_text())["step"] if states else -1


def _after_next_checkpoint(run_dir: Path):
    """True once distillation has written a checkpoint newer than the one there at the first call."""
    start = None

    def ready() -> bool:
        nonlocal start
        if start is None:
            start = _distill_checkpoint_step(run_dir)
        return _distill_checkpoint_step(run_dir) > start

    return ready


def _kill_plan(run_dir: Path) -> list:
    """When to kill each attempt: a condition on the run's progress, then a seeded random extra delay."""
    has = lambda pattern: lambda: any((run_dir / "artifacts").glob(pattern))  # noqa: E731
    return [
        ("while loading the input or pruning", has("00-input-*")),
        ("mid-distillation, after a checkpoint", lambda: _distill_checkpoint_step(run_dir) >= 25),
        ("mid-distillation again, after the resumed run's next checkpoint", _after_next_checkpoint(run_dir)),
        ("during the exports", has("03-distill-*")),
    ]


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_finished_step(tmp_path):
    """SIGKILL `compresskit run` at seeded random moments of each phase; every rerun keeps every finished step."""
    model = _generator(tmp_path / "g", 0)
    recipe = tmp_path / "killed.yaml"
    recipe.write_text(yaml.safe_dump({**KILL_RECIPE, "input": {"model": str(model)}}))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "compresskit", "run", str(recipe), "--out", str(run_dir), "--no-bench"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    rng = random.Random(7)
    kills, resumed = [], 0
    for phase, ready in _kill_plan(run_dir):
        before = _finished_steps(run_dir)
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 180
        while proc.poll() is None and not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(phase)
        _, stderr = proc.communicate(timeout=120)
        resumed += "distill: resuming at step" in stderr
        after = _finished_steps(run_dir)  # a partial artifact would fail its checksums here
        assert {k: after[k] for k in before if k in after} == before and set(before) <= set(after), \
            f"a finished step was lost, changed or redone ({phase})"
    before_final = _finished_steps(run_dir)
    final = subprocess.run(command + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert len(kills) >= 3, f"the kills must land inside the run, landed: {kills}"
    for step in summary["steps"]:
        if Path(step["path"]).name in before_final:
            assert step["status"] == "cached", f"{step['name']} was finished before and must not be redone"
    assert all(load_artifact(Path(s["path"])).id == s["output_id"] for s in summary["steps"])
    assert not list((run_dir / "artifacts").glob(".*")), "no temporary folder left behind"
    assert len(_finished_steps(run_dir)) == len(KILL_RECIPE["steps"]) + 1
    assert resumed >= 1, "distillation resumed from its checkpoint after a kill"
    print(f"SIGKILLs landed {kills}; distill resumed {resumed} time(s); final statuses "
          f"{[s['status'] for s in summary['steps']]}")  # shown with pytest -rP


def test_same_recipe_and_seed_give_the_same_ids_and_weights_bit_for_bit(tmp_path):
    model = _generator(tmp_path / "g", 0)
    steps = [{"sanitize": {}}, {"prune": {"ratio": 0.5, "importance": "taylor", "round_to": 2}},
             {"distill": {"schedule": {"steps": 12, "batch_size": 8, "captions": 32}, "validation": {"size": 8, "every": 6}}}]
    first = run(parse_recipe({"input": {"model": str(model)}, "seed": 3, "steps": steps}, "r.yaml"), tmp_path / "a")
    second = run(parse_recipe({"input": {"model": str(model)}, "seed": 3, "steps": steps}, "r.yaml"), tmp_path / "b")
    assert [r.output_id for r in first.steps] == [r.output_id for r in second.steps]
    for a, b in zip(first.steps, second.steps):
        assert (Path(a.path) / "model.safetensors").read_bytes() == (Path(b.path) / "model.safetensors").read_bytes(), a.name
