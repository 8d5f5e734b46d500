"""The shipped recipes: each validates, says what it is for, and the smoke recipe runs every pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compresskit.recipe import load_recipe
from compresskit.registry import PASSES
from tests.helpers import run_cli

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_the_documented_recipes_ship():
    assert {p.stem for p in RECIPES} >= {"smoke", "int8-openvino", "int8-ort", "prune50-distill",
                                         "edge-openvino-int8", "shapes-edge-openvino-int8"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates_and_starts_with_what_it_is_for(path):
    assert path.read_text().startswith("# "), "a recipe starts with a comment saying what it is for"
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.steps


def test_smoke_recipe_runs_every_pass_from_the_cli(tmp_path):
    recipe = load_recipe(RECIPES[[p.stem for p in RECIPES].index("smoke")])
    # run elsewhere: quantize_ort (an alternative to quantize_nncf), and the once-for-all pair, whose chain of a
    # supernet and a selection is tested end to end on a tiny model in tests/passes/test_select_subnet.py
    elsewhere = {"quantize_ort", "supernet", "select_subnet"}
    assert {s.name for s in recipe.steps} >= set(PASSES) - elsewhere
    result = run_cli("run", "recipes/smoke.yaml", "--out", str(tmp_path / "smoke"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # report.json: the steps, then every candidate measured, then the gates
    assert report["status"] == "done" and [s["status"] for s in report["steps"]] == ["done"] * len(recipe.steps)
    assert [c["name"] for c in report["candidates"]] == ["baseline", "teacher_onnx", "teacher_openvino", "teacher_int8",
                                                          "prune", "distill", "export_onnx", "export_openvino",
                                                          "quantize_nncf", "bundle"]
    assert report["verdict"] == "pass" and len(report["gates"]) == 2
    assert (tmp_path / "smoke" / "report.md").is_file() and (tmp_path / "smoke" / "samples.png").is_file()
