from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("compresskit ")


def test_shapes_json_summary(fresh_cache, tmp_path):
    grid = tmp_path / "grid.png"
    result = run_cli("data", "shapes", "--n", "40", "--size", "32", "--json", "--grid", str(grid))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("images", "train", "val", "eval", "size")} == {
        "images": 40, "train": 24, "val": 7, "eval": 9, "size": 32}
    assert summary["held_pairs"] == {"eval": ["red triangle", "purple square"], "val": ["blue circle", "green diamond"]}
    assert summary["cache_path"].startswith(str(fresh_cache))
    assert summary["built"] is True
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = json.loads(run_cli("data", "shapes", "--n", "40", "--json").stdout)
    assert again["built"] is False and again["cache_path"] == summary["cache_path"]


def test_emoji_json_has_the_documented_keys():
    result = run_cli("data", "emoji", "--size", "32", "--styles", "twemoji,openmoji", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("images", "captions", "styles", "train", "val", "eval", "size", "cache_path"):
        assert key in summary
    assert summary["images"] == summary["train"] + summary["val"] + summary["eval"] > 7000


@pytest.mark.parametrize(("args", "message"), [
    (["data", "emojj"], "unknown dataset 'emojj'; did you mean 'emoji'? (known: emoji, shapes)"),
    (["data", "shapes", "--styles", "twemoji"], "--styles applies to the emoji dataset only"),
    (["data", "emoji", "--styles", "twemoji,emojionee"], "unknown emoji style 'emojionee'"),
    (["data", "shapes", "--n", "0"], "--n must be between 1 and"),
    (["encode", "red apple", ""], "caption 1 is empty"),
    (["train", "missing.yaml"], "cannot read missing.yaml"),
    (["train", "runs[/x]/missing.yaml"], "cannot read runs[/x]/missing.yaml"),  # printed as text, not rich markup
    (["eval"], "give exactly one of --model NAME_OR_DIR and --real"),
    (["eval", "--real", "--model", "x"], "give exactly one of --model NAME_OR_DIR and --real"),
    (["eval", "--real", "--data", "shapez"], "--data must be one of emoji, shapes, got 'shapez'"),
    (["eval", "--real", "--data", "shapes", "--n", "5000"], "--n must be between 1 and 1474"),
    (["eval", "--real", "--data", "shapes", "--split", "test"], "--split must be one of eval, val, got 'test'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in _one_error_line(result)


def test_unwritable_cache_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("data", "shapes", "--n", "5", env={"COMPRESSKIT_CACHE": str(blocker / "cache")})
    assert result.returncode == 2
    assert "set COMPRESSKIT_CACHE to a writable folder" in _one_error_line(result)


def test_encode_json(fresh_cache):
    result = run_cli("encode", "red apple", "green apple", "rocket", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["dim"] == 384 and len(out["vectors"]) == 3
    cosine = out["cosine"]
    assert cosine[0][1] > cosine[0][2]
