"""Reliability round 3 (issue 44, item 4): a full disk and SIGKILL in every step of the edge recipe.

The edge recipe's own steps at test sizes (``fault_edge.py``): sanitize, slim distillation, ONNX with fused
conditioning, OpenVINO IR, NNCF INT8 with accuracy control, an INT8 bundle with a 2-layer text encoder; and a
bench. A reference run on a roomy disk gives the bytes every other run must end with.

* A full disk (a real one: a small tmpfs in a private mount namespace, grown a little after each failure so that
  it fills in every step, the bench's teacher exports and its report in turn): each failure is one line naming
  the folder and the space, exit 2, no temporary file left, every finished artifact intact; the same command
  then goes on, and the run ends with the reference's bytes.
* SIGKILL at a seeded random moment inside each step (distillation twice, each after a checkpoint), then the
  same command again: the step is finished from where it stopped and its artifact is byte-identical to the
  reference's.
"""

from __future__ import annotations

import errno
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

from compresskit.models import create_generator, save_model
from tests.fault_edge import EDGE_STEPS, ENV, command, edge_recipe, intact, leftovers, payload

HERE = Path(__file__).resolve().parent


def _cli(recipe: Path, out: Path, bench: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command(recipe, out, bench), capture_output=True, text=True, env={**os.environ, **ENV},
                          timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(model, the recipe with a bench, a finished run of it on a roomy disk, {step name: seconds})."""
    root = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    model = save_model(root / "generator", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    recipe = root / "edge.yaml"
    recipe.write_text(yaml.safe_dump(edge_recipe(model, bench=True)))
    done = _cli(recipe, root / "ref", bench=True)
    assert done.returncode == 0, done.stderr
    seconds = {s["name"]: s["seconds"] for s in json.loads((root / "ref" / "run.json").read_text())["steps"]}
    return model, recipe, root / "ref", seconds


def _mount_namespace() -> list[str] | None:
    """How to run a command as root of a private mount namespace (root here, or a user namespace), or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m", "--propagation", "private"], ["unshare", "-r", "-m", "--propagation", "private"]):
        if prefix[1] == "-m" and os.geteuid() != 0:
            continue
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                                "mount -t tmpfs -o size=64k tmpfs \"$TMPDIR\""], capture_output=True,
                               env={**os.environ, "TMPDIR": "/tmp"})
        if probe.returncode == 0:
            return prefix
    return None


@pytest.mark.slow
def test_a_disk_that_fills_in_every_step_the_bench_and_the_report_stops_cleanly_and_resumes_to_the_same_bytes(
        reference, tmp_path):
    prefix = _mount_namespace()
    if prefix is None:  # CI runs as root: this runs there
        pytest.skip("no private mount namespace here (needs root or user namespaces) to make a small real disk")
    _, recipe, ref, _ = reference

    def pages(*paths: Path) -> int:  # what the files take on a tmpfs: whole 4 KiB pages
        files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
        return sum(-(-f.stat().st_size // 4096) * 4096 for f in files)

    artifacts = sorted((ref / "artifacts").iterdir())
    plan = [["the input's copy", pages(artifacts[0]), 0]]
    plan += [[folder.name.rsplit("-", 1)[0], pages(folder), int(folder.name[:2])] for folder in artifacts[1:]]
    plan += [[name, pages(next((ref / "baselines").glob(f"{name}-*"))), -1]
             for name in ("teacher_onnx", "teacher_openvino", "teacher_int8")]
    plan += [["the bench", pages(ref / "report.json", ref / "report.md", ref / "pareto.png"), -1]]
    out = tmp_path / "attempts.json"
    proc = subprocess.run([*prefix, sys.executable, str(HERE / "fault_edge.py"), "fill", str(tmp_path / "disk"),
                           str(recipe), str(out), json.dumps(plan)], capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = json.loads(out.read_text())["attempts"]
    table = "\n".join(f"{a['aim']:<28} {a['size'] // 1024:>6} KiB  exit {a['exit']}  "
                      f"{a['errors'][-1] if a['errors'] else a['last_line']}" for a in attempts)
    print(table)  # shown with pytest -rP
    for key, _, _ in plan:
        stopped = [a for a in attempts if a["aim"] == f"fill in {key}"]
        assert stopped and key in " ".join(stopped[-1]["errors"]), f"the disk did not fill in {key}:\n{table}"
    for a in attempts:
        if a["aim"].startswith("fill in"):
            assert a["exit"] == 2 and len(a["errors"]) == 1 and not a["traceback"], a
            line = a["errors"][0]
            assert line.startswith("error: disk full: ") and "free on that disk" in line
            assert "rerun the same command" in line and "/disk/run" in line, "one line naming the folder and the space"
        else:
            assert a["exit"] == 0, f"{a['aim']}: the same command goes on once there is room:\n{table}"
        assert a["leftovers"] == [], f"a temporary file or folder was left: {a['leftovers']}"
        assert a["problems"] == [], f"what the failure left is damaged: {a['problems']}"
    mine, theirs = json.loads(out.read_text())["payload"], payload(ref)
    differ = sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))
    assert not differ, f"the resumed run must end with the reference's bytes; these differ: {differ}"


def test_a_full_disk_in_a_pass_is_one_line_naming_the_step_and_the_temporary_folder_is_removed(reference, tmp_path,
                                                                                               monkeypatch):
    """The same without a real small disk (any machine): ENOSPC raised where export_openvino writes its IR."""
    import openvino

    from compresskit.errors import DiskFull
    from compresskit.recipe import parse_recipe
    from compresskit.runner import run

    model = reference[0]
    steps = 4
    run_dir = tmp_path / "run"
    real = openvino.save_model

    def full(model, path, *args, **kwargs):
        real(model, path, *args, **kwargs)  # a real partial write first, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(openvino, "save_model", full)
    with pytest.raises(DiskFull) as caught:
        run(parse_recipe(edge_recipe(model, steps), "edge.yaml"), run_dir)
    message = str(caught.value)
    assert "\n" not in message and "export_openvino's artifact 04-export_openvino-" in message
    assert f"in {run_dir / 'artifacts'} (" in message and "it had written" in message and "KiB" in message
    assert leftovers(run_dir) == [] and intact(run_dir) == []
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["status"] == "failed" and summary["failed_step"] == 4
    monkeypatch.setattr(openvino, "save_model", real)
    # resumed in a copy of the folder: in CI a process this test's run had started still held the first folder's
    # lock when the rerun began (an open issue of the lock; tests/test_reliability_round2.py covers the lock itself)
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    again = run(parse_recipe(edge_recipe(model, steps), "edge.yaml"), resumed)
    assert [r.status for r in again.steps] == ["cached", "cached", "cached", "done"]
    assert payload(resumed) == {k: v for k, v in payload(reference[2]).items() if k.split("/")[1][:2] <= f"{steps:02d}"
                                and k.startswith("artifacts/")}


def _running(run_dir: Path, number: int, name: str) -> bool:
    return any((run_dir / "artifacts").glob(f".{number:02d}-{name}-*.tmp"))


def _finished(run_dir: Path, number: int, name: str) -> bool:
    return any((run_dir / "artifacts").glob(f"{number:02d}-{name}-*"))


def _ready(run_dir: Path, number: int, name: str, checkpoint_before: int) -> bool:
    """When to start the random wait before a kill: the step's temporary folder exists (distillation: it wrote a
    checkpoint newer than the one it started from, so the kill tests a resume)."""
    if name == "distill":
        return _checkpoint(run_dir) > max(checkpoint_before, 0)
    return _running(run_dir, number, name)


def _checkpoint(run_dir: Path) -> int:
    states = list(run_dir.glob("scratch/*-distill-*/checkpoint/train_state.json"))
    try:
        return json.loads(states[0].read_text())["step"] if states else -1
    except (ValueError, OSError):
        return -1


@pytest.mark.slow
def test_sigkill_at_a_random_moment_of_each_step_then_the_same_command_gives_byte_identical_artifacts(
        reference, tmp_path):
    model, _, ref, seconds = reference
    rng = random.Random(44)
    expected = payload(ref)
    report = []
    for number, step in enumerate(EDGE_STEPS, start=1):
        name = next(iter(step))
        recipe = tmp_path / f"upto-{number}.yaml"
        recipe.write_text(yaml.safe_dump(edge_recipe(model, number)))  # the same ids: a step's id is its chain's
        run_dir = tmp_path / f"killed-in-{name}"
        (run_dir / "artifacts").mkdir(parents=True)
        for folder in sorted((ref / "artifacts").iterdir())[:number]:  # the input and the steps before: finished
            shutil.copytree(folder, run_dir / "artifacts" / folder.name)
        kills = 2 if name == "distill" else 1
        landed = []
        for attempt in range(6 * kills):
            if len(landed) == kills:
                break
            proc = subprocess.Popen(command(recipe, run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env={**os.environ, **ENV})
            deadline = time.monotonic() + 300
            start = _checkpoint(run_dir)
            while proc.poll() is None and not _ready(run_dir, number, name, start) and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.8) * seconds[name] / (2 ** attempt if name != "distill" else 4))
            inside = proc.poll() is None and not _finished(run_dir, number, name)
            proc.send_signal(signal.SIGKILL) if inside else None
            proc.communicate(timeout=300)
            if inside:
                landed.append(f"after a checkpoint at step {_checkpoint(run_dir)}" if name == "distill" else "mid-step")
                stray = [p for p in leftovers(run_dir) if not (p.startswith(f"artifacts/.{number:02d}-{name}-")
                                                                or p.startswith("scratch/"))]
                assert stray == [], "a killed step may leave only its own temporary folders (the next run removes them)"
            else:  # the step ended before the kill: try again, earlier
                shutil.rmtree(next((run_dir / "artifacts").glob(f"{number:02d}-{name}-*")))
                shutil.rmtree(run_dir / "scratch", ignore_errors=True)
        assert len(landed) == kills, f"no kill landed inside {name}"
        resumed = _cli(recipe, run_dir)
        assert resumed.returncode == 0, resumed.stderr
        statuses = [step["status"] for step in json.loads((run_dir / "run.json").read_text())["steps"]]
        assert statuses == ["cached"] * (number - 1) + ["done"], "finished steps are kept, the killed one finished"
        if name == "distill":
            assert "distill: resuming at step" in resumed.stderr
        assert intact(run_dir) == [] and leftovers(run_dir) == []
        mine = payload(run_dir)
        key = next(k for k in mine if k.startswith(f"artifacts/{number:02d}-{name}-"))
        assert mine[key] == expected[key], f"{name}: after SIGKILL and a resume the artifact differs from the reference"
        report.append(f"{name}: killed {', '.join(landed)}; resumed: byte-identical")
    print("\n".join(report))  # shown with pytest -rP
