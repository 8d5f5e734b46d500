"""Reliability, round two: one owner per run folder, user specs proven before compute, checksummed model
folders, and interruptions (SIGTERM, Ctrl-C) that say what they stopped and leave nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from compresskit.artifact import load_artifact
from compresskit.model_files import CHECKSUMS_FILE
from compresskit.models import create_generator, save_model
from tests.helpers import run_cli
from tests.passes.user_generators import ConvTransposeGenerator

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
SLOW_STEPS = [{"sanitize": {}}, {"prune": {"ratio": 0.5, "importance": "l1", "round_to": 2}},
              {"distill": {"schedule": {"steps": 1200, "batch_size": 8, "captions": 64},
                           "validation": {"size": 16, "every": 50, "checkpoint_every": 25, "patience": 100}}},
              {"export_onnx": {}}]


@pytest.fixture(scope="module")
def slow_recipe(tmp_path_factory) -> Path:
    """A recipe on a tiny generator whose distillation runs for several seconds (time for a second run to collide)."""
    root = tmp_path_factory.mktemp("owner")
    torch.manual_seed(0)
    model = save_model(root / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    recipe = root / "slow.yaml"
    recipe.write_text(yaml.safe_dump({"name": "slow", "seed": 0, "threads": 1, "input": {"model": str(model)},
                                      "steps": SLOW_STEPS}))
    return recipe


def _start(recipe: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "compresskit", "run", str(recipe), "--out", str(out), "--no-bench",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _finished(run_dir: Path) -> dict[str, str]:
    return {f.name: load_artifact(f).id for f in sorted((run_dir / "artifacts").iterdir()) if not f.name.startswith(".")}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:") or line.startswith("interrupted")]


@pytest.mark.slow
def test_two_runs_on_one_folder_one_completes_the_other_is_refused_cleanly(slow_recipe, tmp_path):
    out = tmp_path / "run"
    first, second = _start(slow_recipe, out), _start(slow_recipe, out)
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use by another run (pid" in refused and "--wait" in refused, refused
    assert len(refused.strip().splitlines()) == 1 and "Traceback" not in refused
    assert len(_finished(out)) == len(SLOW_STEPS) + 1, "the run that owned the folder finished every step"
    assert not list((out / "artifacts").glob(".*")), "no temporary folder left behind"
    waited = _start(slow_recipe, out, "--wait")  # a third run waits its turn instead; everything is reused
    assert waited.wait(timeout=300) == 0


@pytest.mark.slow
def test_a_waiting_run_starts_when_the_owner_ends_and_a_sigkilled_owner_frees_the_folder(slow_recipe, tmp_path):
    out = tmp_path / "run"
    owner = _start(slow_recipe, out)
    _wait_for(lambda: list(out.glob("scratch/*-distill-*/checkpoint/train_state.json")))
    waiter = _start(slow_recipe, out, "--wait")
    time.sleep(2)
    assert waiter.poll() is None, "the second run waits while the first owns the folder"
    owner.send_signal(signal.SIGKILL)  # the kernel releases the lock with the process
    owner.wait()
    code = waiter.wait(timeout=300)
    assert code == 0, waiter.communicate()[1]
    assert "distill: resuming at step" in waiter.communicate()[1]
    assert len(_finished(out)) == len(SLOW_STEPS) + 1


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "how"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_sigterm_and_ctrl_c_say_which_step_stopped_and_a_rerun_resumes(slow_recipe, tmp_path, sig, code, how):
    out = tmp_path / "run"
    proc = _start(slow_recipe, out)
    _wait_for(lambda: list(out.glob("scratch/*-distill-*/checkpoint/train_state.json")))
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == code
    stderr = proc.communicate()[1]
    [line] = _error_lines(stderr)  # one line, no error: line besides it
    assert line.startswith(f"interrupted ({how}) during step 3 (distill)") and "rerun the same command to resume" in line
    assert "Traceback" not in stderr
    assert not list((out / "artifacts").glob(".*")), "nothing half-written is visible"
    assert len(_finished(out)) == 3, "input, sanitize and prune stay finished"
    rerun = _start(slow_recipe, out)
    assert rerun.wait(timeout=300) == 0 and "distill: resuming at step" in rerun.communicate()[1]


def _user_model(tmp_path: Path, z_dim: int = 100) -> Path:
    torch.manual_seed(0)
    weights = tmp_path / "g.safetensors"
    save_file(ConvTransposeGenerator(z_dim=z_dim, width=32).state_dict(), str(weights))
    return weights


@pytest.mark.parametrize(("declared", "fragment"), [
    ({"z_dim": 64}, "input.z_dim: declared 64, but the model takes 100"),
    ({"z_dim": 100, "text_dim": 128}, "input.text_dim: declared 128, but the model takes 384"),
    ({"z_dim": 100, "image_size": 64}, "input.image_size: declared 64, but the model draws 32x32 px images; set input.image_size: 32"),
])
def test_a_user_spec_that_disagrees_with_the_model_is_one_line_before_any_compute(tmp_path, declared, fragment):
    weights = _user_model(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"input": {"factory": "tests.passes.user_generators:conv_transpose",
                                                "kwargs": {"z_dim": 100, "width": 32}, "weights": str(weights), **declared},
                                      "steps": [{"sanitize": {}}, {"export_onnx": {}}]}))
    done = run_cli("run", str(recipe), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and fragment in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not list((tmp_path / "run" / "artifacts").glob("0*")), "no artifact was made"


def test_a_user_model_whose_output_leaves_minus_one_to_one_is_refused(tmp_path):
    from compresskit.errors import ModelError
    from compresskit.models.user import FactorySpec, build, prove_spec

    spec = FactorySpec(factory="tests.passes.user_generators:conv_transpose", kwargs={"z_dim": 16, "width": 32}, z_dim=16)
    model = build(spec)
    prove_spec(model, spec)  # tanh output: fine
    model.forward = lambda z, text: 3.0 * torch.ones(len(z), 3, 32, 32)
    with pytest.raises(ModelError, match=r"spans \[3, 3\], outside \[-1, 1\]; end forward with tanh"):
        prove_spec(model, spec)


def _zoo_folders() -> list[str]:
    from compresskit.models.io import ZOO_DIR

    return sorted(p.name for p in ZOO_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


@pytest.mark.parametrize("zoo", _zoo_folders())
def test_every_shipped_model_folder_carries_checksums_that_verify(zoo):
    from compresskit.models.checksums import verify_model_folder
    from compresskit.models.io import ZOO_DIR

    listed = (ZOO_DIR / zoo / CHECKSUMS_FILE).read_text().splitlines()
    assert {line.split("  ")[1] for line in listed} >= {"config.json", "model.safetensors", "MODEL_CARD.md"}
    assert verify_model_folder(ZOO_DIR / zoo) is True


def test_a_bit_flipped_model_folder_is_refused_and_named(tmp_path):
    from compresskit.models.io import ZOO_DIR

    folder = tmp_path / "tampered"
    shutil.copytree(ZOO_DIR / "emoji32-tiny", folder)
    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(weights))
    for argv in (["generate", "red apple", "--model", str(folder), "-o", str(tmp_path / "x.png")],
                 ["info", str(folder)]):
        done = run_cli(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert f"{folder / 'model.safetensors'} does not match its checksum in {CHECKSUMS_FILE}" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"input": {"model": str(folder)}, "steps": [{"sanitize": {}}]}))
    done = run_cli("run", str(recipe), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "does not match its checksum" in done.stderr


def test_a_model_folder_without_checksums_is_accepted_with_a_one_line_note(tmp_path):
    from compresskit.models.io import ZOO_DIR

    folder = tmp_path / "mine"
    shutil.copytree(ZOO_DIR / "emoji32-tiny", folder)
    (folder / CHECKSUMS_FILE).unlink()
    done = run_cli("info", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) and done.stderr.strip() == (
        f"note: {folder} has no {CHECKSUMS_FILE}: its files are not verified (a folder written by compresskit has one)")


def test_folders_compresskit_writes_carry_checksums(tmp_path):
    from compresskit.models.checksums import verify_model_folder

    folder = save_model(tmp_path / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    assert (folder / CHECKSUMS_FILE).is_file() and verify_model_folder(folder)
    (folder / "config.json").write_text((folder / "config.json").read_text().replace('"meta"', '"meta" '))
    from compresskit.errors import ModelError

    with pytest.raises(ModelError, match="config.json does not match its checksum"):
        verify_model_folder(folder)
