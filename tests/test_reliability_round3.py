"""Reliability round 3 (issue 44): each case reproduced as a user meets it, through the command line."""

from __future__ import annotations

import json

import pytest
import torch

from compresskit.model_files import write_checksums
from compresskit.models.user import FactorySpec, write_user_generator
from tests.helpers import run_cli
from tests.passes import user_generators

FACTORY = "tests.passes.user_generators:conv_transpose"


@pytest.fixture
def untrusted(tmp_path) -> dict:
    """A subprocess environment that trusts nothing: no grants inherited, an empty user config folder."""
    return {"COMPRESSKIT_TRUST_FACTORY": "", "XDG_CONFIG_HOME": str(tmp_path / "config")}


@pytest.fixture
def user_folder(tmp_path) -> str:
    """A model folder written for a user's generator (factory.json naming the test package's factory)."""
    torch.manual_seed(0)
    spec = FactorySpec(factory=FACTORY, kwargs={"z_dim": 16, "width": 16}, z_dim=16)
    folder = tmp_path / "user-model"
    folder.mkdir()
    write_user_generator(folder, user_generators.conv_transpose(z_dim=16, width=16), spec)
    write_checksums(folder)
    return str(folder)


def _one_line(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert done.stderr.strip().count("\n") == 0, done.stderr
    return done.stderr.strip()


def test_a_downloaded_folder_naming_a_program_as_its_factory_runs_nothing(tmp_path, user_folder, untrusted):
    marker = tmp_path / "ran"
    doc = json.loads((tmp_path / "user-model" / "factory.json").read_text())
    doc["spec"] = {**doc["spec"], "factory": "subprocess:call", "kwargs": {"args": ["touch", str(marker)]}}
    (tmp_path / "user-model" / "factory.json").write_text(json.dumps(doc))
    write_checksums(tmp_path / "user-model")  # a consistent folder, as a download would be
    for command in (["info", user_folder], ["generate", "red apple", "--model", user_folder, "-o", str(tmp_path / "g.png")],
                    ["eval", "--model", user_folder, "--n", "8"]):
        line = _one_line(run_cli(*command, env=untrusted))
        assert "'subprocess:call', which is not trusted" in line and "--trust-factory subprocess:call" in line
    assert not marker.exists(), "loading the folder ran the program it names"


def test_a_users_factory_runs_when_the_user_trusts_it_by_flag_package_or_their_own_list(tmp_path, user_folder,
                                                                                       untrusted):
    line = _one_line(run_cli("info", user_folder, "--json", env=untrusted))
    assert f"--trust-factory {FACTORY}" in line and "trusted_factories" in line
    for flag in (FACTORY, "tests.passes", "tests"):  # the factory, its module's package, a package above it
        done = run_cli("info", user_folder, "--json", "--trust-factory", flag, env=untrusted)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["params"] > 0
    assert _one_line(run_cli("info", user_folder, "--trust-factory", "tests.pass", env=untrusted))  # not a prefix match
    listed = tmp_path / "config" / "compresskit" / "trusted_factories"
    listed.parent.mkdir(parents=True)
    listed.write_text("# my own packages\ntests.passes.user_generators  # the test generators\n")
    assert run_cli("info", user_folder, "--json", env=untrusted).returncode == 0


def test_a_malformed_trust_flag_is_one_line(user_folder, untrusted):
    line = _one_line(run_cli("info", user_folder, "--trust-factory", "not a module!", env=untrusted))
    assert "--trust-factory takes package.module or package.module:callable" in line


def test_shipped_models_need_no_trust(untrusted):
    done = run_cli("info", "emoji32-v3", "--json", env=untrusted)
    assert done.returncode == 0, done.stderr


def test_a_caption_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    import os

    caption = os.fsdecode(b"red \xff\xfe apple")  # what a shell hands Python for $'red \xff\xfe apple'
    line = _one_line(run_cli("generate", caption, "-o", str(tmp_path / "g.png")))
    assert "caption 0 (b'red \\xff\\xfe apple') is not valid UTF-8 text" in line
    assert not (tmp_path / "g.png").exists()


def test_generate_into_a_folder_or_an_unwritable_place_is_one_line_and_writes_nothing(tmp_path):
    assert "is a folder; give the grid's file name" in _one_line(run_cli("generate", "red apple", "-o", str(tmp_path)))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a path under a file cannot be written, even by root
    line = _one_line(run_cli("generate", "red apple", "--n", "1", "-o", str(blocker / "grid.png")))
    assert f"cannot write {blocker / 'grid.png'}" in line
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_run_out_an_existing_file_is_one_line_and_the_file_is_kept(tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    line = _one_line(run_cli("run", "recipes/edge-openvino-int8.yaml", "--out", str(target)))
    assert f"--out {target} is a file" in line and target.read_text() == "mine"


def _encoded(done) -> list[float]:
    assert done.returncode == 0, done.stderr
    return [x for row in json.loads(done.stdout)["vectors"] for x in row]


def test_a_garbage_embeddings_cache_is_rebuilt_with_one_note_even_by_two_processes_at_once(tmp_path):
    import subprocess
    import sys

    clean = _encoded(run_cli("encode", "red apple", "cat face", "--json", env={"COMPRESSKIT_CACHE": str(tmp_path / "a")}))
    cache = tmp_path / "b"
    cache.mkdir()
    (cache / "embeddings.sqlite").write_bytes(b"this is not a database" * 300)
    env = {**__import__("os").environ, "COMPRESSKIT_CACHE": str(cache), "COLUMNS": "200"}
    command = [sys.executable, "-m", "compresskit", "encode", "red apple", "cat face", "--json"]
    both = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    notes = []
    for process in both:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        assert [x for row in json.loads(stdout)["vectors"] for x in row] == pytest.approx(clean, abs=1e-6)
        notes += [line for line in stderr.splitlines() if "embedding cache" in line]
    assert len(notes) == 1 and all(n.startswith("note: ") and "rebuilt" in n for n in notes), notes
    assert len(list(cache.glob("embeddings.sqlite.corrupt-*"))) == 1  # moved aside once, not twice
    again = run_cli("encode", "red apple", "cat face", "--json", env={"COMPRESSKIT_CACHE": str(cache)})
    assert json.loads(again.stdout)["cache"]["hits"] == 2 and "embedding cache" not in again.stderr


def test_a_damaged_row_of_the_embeddings_cache_is_computed_again_never_returned(tmp_path):
    import sqlite3

    env = {"COMPRESSKIT_CACHE": str(tmp_path)}
    clean = _encoded(run_cli("encode", "red apple", "--json", env=env))
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as db:
        assert db.execute("UPDATE embeddings SET data = ? WHERE text = 'red apple'", (b"\x00" * 7,)).rowcount == 1
    done = run_cli("encode", "red apple", "--json", env=env)
    assert _encoded(done) == pytest.approx(clean, abs=1e-6)
    assert json.loads(done.stdout)["cache"] == {"hits": 0, "computed": 1}
    assert json.loads(run_cli("encode", "red apple", "--json", env=env).stdout)["cache"]["hits"] == 1  # replaced


@pytest.mark.parametrize("damage", ["garbage images", "truncated index", "index of another length"])
def test_a_damaged_dataset_cache_is_built_again_with_one_note(tmp_path, damage):
    env = {"COMPRESSKIT_CACHE": str(tmp_path)}
    args = ("data", "shapes", "--n", "64", "--json")
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    (folder,) = (tmp_path / "datasets").iterdir()
    if damage == "garbage images":
        (folder / "images.npy").write_bytes(b"\x93NUMPY garbage" * 10)
    elif damage == "truncated index":
        text = (folder / "index.json").read_text()
        (folder / "index.json").write_text(text[: len(text) // 2])
    else:
        index = json.loads((folder / "index.json").read_text())
        (folder / "index.json").write_text(json.dumps({**index, "captions": index["captions"][:10]}))
    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if "damaged" in line]
    assert len(notes) == 1 and notes[0].startswith("note: the cached dataset") and "building it again" in notes[0]
    assert json.loads(again.stdout)["train"] == json.loads(first.stdout)["train"]
    assert "damaged" not in run_cli(*args, env=env).stderr  # rebuilt whole: the next run reads it
