from __future__ import annotations

import json

import pytest

from compresskit.artifact import load_artifact
from compresskit.errors import ArtifactError, PassFailed
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes.conftest import recipe_dict


def two_steps(model, **onnx):
    return parse_recipe(recipe_dict(model, {"sanitize": {}}, {"export_onnx": onnx}), "r.yaml")


def test_rerun_reuses_every_finished_step(tiny_generator_dir, tmp_path):
    first = run(two_steps(tiny_generator_dir), tmp_path / "run")
    again = run(two_steps(tiny_generator_dir), tmp_path / "run")
    assert [r.status for r in first.steps] == ["done", "done"]
    assert [r.status for r in again.steps] == ["cached", "cached"]
    assert [r.output_id for r in first.steps] == [r.output_id for r in again.steps]
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["status"] == "done" and len(summary["steps"]) == 2


def test_ids_are_deterministic_across_run_folders(tiny_generator_dir, tmp_path):
    a = run(two_steps(tiny_generator_dir), tmp_path / "a")
    b = run(two_steps(tiny_generator_dir), tmp_path / "b")
    assert [r.output_id for r in a.steps] == [r.output_id for r in b.steps]
    assert a.input.id == b.input.id


def test_a_config_change_reruns_only_that_step_and_after(tiny_generator_dir, tmp_path):
    run(two_steps(tiny_generator_dir), tmp_path / "run")
    changed = run(two_steps(tiny_generator_dir, tolerance=1e-3), tmp_path / "run")
    assert [r.status for r in changed.steps] == ["cached", "done"]


def test_a_corrupt_artifact_is_detected_and_rebuilt(tiny_generator_dir, tmp_path):
    first = run(two_steps(tiny_generator_dir), tmp_path / "run")
    onnx_file = first.final.path / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.onnx does not match its manifest checksum"):
        load_artifact(first.final.path)
    events = []
    again = run(two_steps(tiny_generator_dir), tmp_path / "run", on_event=events.append)
    assert [r.status for r in again.steps] == ["cached", "done"]
    assert any("rebuilding 02-export_onnx" in (e.message or "") for e in events)
    load_artifact(again.final.path)  # intact again


def test_a_failing_pass_leaves_no_artifact_and_a_failed_run_json(tiny_generator_dir, tmp_path):
    with pytest.raises(PassFailed, match="max abs error vs torch .* > tolerance 1e-20"):
        run(two_steps(tiny_generator_dir, tolerance=1e-20), tmp_path / "run")
    assert not list((tmp_path / "run" / "artifacts").glob("02-export_onnx-*"))
    assert not list((tmp_path / "run" / "artifacts").glob(".*")), "no temporary folder left behind"
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["status"] == "failed" and summary["failed_step"] == 2
