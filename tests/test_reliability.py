"""Reliability: corrupt files are caught and rebuilt, runs repeat bit for bit (SIGKILL and a full disk: test_faults.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

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


def test_same_recipe_and_seed_give_the_same_ids_and_weights_bit_for_bit(tmp_path):
    model = _generator(tmp_path / "g", 0)
    steps = [{"sanitize": {}}, {"prune": {"ratio": 0.5, "importance": "taylor", "round_to": 2}},
             {"distill": {"schedule": {"steps": 12, "batch_size": 8, "captions": 32}, "validation": {"size": 8, "every": 6}}}]
    first = run(parse_recipe({"input": {"model": str(model)}, "seed": 3, "steps": steps}, "r.yaml"), tmp_path / "a")
    second = run(parse_recipe({"input": {"model": str(model)}, "seed": 3, "steps": steps}, "r.yaml"), tmp_path / "b")
    assert [r.output_id for r in first.steps] == [r.output_id for r in second.steps]
    for a, b in zip(first.steps, second.steps):
        assert (Path(a.path) / "model.safetensors").read_bytes() == (Path(b.path) / "model.safetensors").read_bytes(), a.name
