"""One artifact store shared by many run folders: a shared prefix of steps is computed once, copied elsewhere.

Tiny runs (a small untrained generator; sanitize + export_onnx): the second run folder copies the shared step from
the store, byte for byte, and computes only what differs; two processes started together compute each shared step
once; a corrupted store entry is rebuilt, said in one line, never used.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from compresskit.artifact import MANIFEST, load_artifact
from compresskit.cli import app
from compresskit.models import create_generator, save_model
from compresskit.passes.store import STORE_ENV
from compresskit.recipe import parse_recipe
from compresskit.runner import run

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_model(tmp_path_factory.mktemp("tiny") / "generator", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))


def recipe(model: Path, **onnx) -> dict:
    return {"input": {"model": str(model)}, "steps": [{"sanitize": {}}, {"export_onnx": onnx}]}


def steps_of(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "run.json").read_text())["steps"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_run_folder_copies_the_shared_prefix_and_computes_what_differs(tiny_model, tmp_path, monkeypatch):
    store = tmp_path / "store"
    first = run(parse_recipe(recipe(tiny_model), "a.yaml"), tmp_path / "a", store=store)
    monkeypatch.setenv(STORE_ENV, str(store))  # the second run finds the store through the environment
    events = []
    second = run(parse_recipe(recipe(tiny_model, tolerance=1e-3), "b.yaml"), tmp_path / "b", on_event=events.append)

    assert [(s["name"], s["cached"], s["status"]) for s in steps_of(tmp_path / "b")] == [
        ("sanitize", True, "cached"), ("export_onnx", False, "done")]
    shared, own = second.steps
    assert shared.output_id == first.steps[0].output_id and own.output_id != first.steps[1].output_id
    assert any(f"sanitize-{shared.output_id} copied from the store" in (e.message or "") for e in events)
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == sorted(
        [f"sanitize-{shared.output_id}", f"export_onnx-{first.steps[1].output_id}", f"export_onnx-{own.output_id}"])

    # the copy is the same artifact, byte for byte, and belongs to its own run folder: nothing in it points elsewhere
    copied = Path(shared.path)
    assert copied.parent == tmp_path / "b" / "artifacts"
    assert files_of(copied) == files_of(Path(first.steps[0].path)) == files_of(store / f"sanitize-{shared.output_id}")
    for blob in files_of(copied).values():
        assert str(tmp_path / "a").encode() not in blob and str(store).encode() not in blob
    assert load_artifact(copied).path == copied  # checks every file against its manifest, where it now lies
    assert load_artifact(second.final.path).parent_id == shared.output_id


def _run_in_process(model: str, run_dir: str, store: str, start, onnx: dict) -> None:
    start.wait(timeout=120)  # both processes reach the steps together
    run(parse_recipe(recipe(Path(model), **onnx), "r.yaml"), Path(run_dir), store=Path(store))


def test_two_processes_started_together_compute_each_shared_step_once(tiny_model, tmp_path):
    """Two different recipes sharing a prefix (the input, sanitize), started together on one store."""
    store, start = tmp_path / "store", SPAWN.Barrier(2)
    processes = [SPAWN.Process(target=_run_in_process, args=(str(tiny_model), str(tmp_path / name), str(store), start,
                                                              onnx)) for name, onnx in (("one", {}), ("two", {"opset": 18}))]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    for process in processes:
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0, 0]

    one, two = steps_of(tmp_path / "one"), steps_of(tmp_path / "two")
    (last_one, last_two), one, two = (one[-1], two[-1]), one[:-1], two[:-1]
    assert last_one["output_id"] != last_two["output_id"] and not last_one["cached"] and not last_two["cached"], \
        "the steps that differ are each computed by their own run"
    for a, b in zip(one, two):
        assert a["output_id"] == b["output_id"]
        assert sorted([a["cached"], b["cached"]]) == [False, True], f"{a['name']} computed by exactly one process"
        assert files_of(Path(a["path"])) == files_of(Path(b["path"]))
        load_artifact(Path(a["path"]))
        load_artifact(Path(b["path"]))
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")], "no half-published copy left behind"


def test_a_corrupt_store_entry_is_rebuilt_with_a_log_line_never_used(tiny_model, tmp_path):
    store = tmp_path / "store"
    first = run(parse_recipe(recipe(tiny_model), "a.yaml"), tmp_path / "a", store=store)
    entry = store / f"export_onnx-{first.steps[1].output_id}"
    onnx = entry / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))

    events = []
    again = run(parse_recipe(recipe(tiny_model), "a.yaml"), tmp_path / "c", store=store, on_event=events.append)
    assert [s["status"] for s in steps_of(tmp_path / "c")] == ["cached", "done"]
    said = [e.message for e in events if e.kind == "log" and "store: rebuilding" in (e.message or "")]
    assert len(said) == 1 and f"export_onnx-{first.steps[1].output_id}" in said[0] and "checksum" in said[0]
    assert "\n" not in said[0]
    assert files_of(Path(again.steps[1].path)) == files_of(Path(first.steps[1].path))  # rebuilt: the same bytes
    assert load_artifact(entry).id == first.steps[1].output_id  # the store holds an intact copy again
    assert (entry / MANIFEST).is_file()


def test_compresskit_run_takes_the_store_from_the_command_line(tiny_model, tmp_path):
    store = tmp_path / "store"
    run(parse_recipe(recipe(tiny_model), "a.yaml"), tmp_path / "a", store=store)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(json.dumps(recipe(tiny_model)))  # JSON is YAML
    done = CliRunner().invoke(app, ["run", str(recipe_file), "--out", str(tmp_path / "b"), "--store", str(store),
                                    "--no-bench", "--json"])
    assert done.exit_code == 0, done.output
    assert [s["status"] for s in steps_of(tmp_path / "b")] == ["cached", "cached"]
