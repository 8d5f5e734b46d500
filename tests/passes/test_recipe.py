from __future__ import annotations

import pytest

from compresskit.errors import RecipeError
from compresskit.recipe import load_recipe, parse_recipe
from tests.passes.conftest import recipe_dict


@pytest.mark.parametrize(("steps", "message"), [
    ([{"sanitise": {}}], "step 1: unknown pass 'sanitise'; did you mean 'sanitize'?"),
    ([{"export_onnx": {"opsett": 17}}], "step 1 (export_onnx): unknown key 'opsett'; did you mean 'opset'?"),
    ([{"export_onnx": {"opset": 11}}], "step 1 (export_onnx): opset: Input should be greater than or equal to 17"),
    ([{"export_onnx": {}}, {"sanitize": {}}], "step 2 (sanitize) takes torch but receives onnx"),
    ([{"sanitize": {}, "export_onnx": {}}], "step 1: each step is one mapping"),
    ([], "steps: List should have at least 1 item"),
])
def test_bad_steps_are_named_before_any_compute(tiny_generator_dir, steps, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_top_level_typos_and_missing_input(tiny_generator_dir, tmp_path):
    with pytest.raises(RecipeError, match="unknown key 'stepz'; did you mean 'steps'"):
        parse_recipe({"input": {"model": str(tiny_generator_dir)}, "stepz": []}, "r.yaml")
    with pytest.raises(RecipeError, match="input.model: no model 'nope'"):
        parse_recipe(recipe_dict("nope", {"sanitize": {}}), "r.yaml")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        parse_recipe(["sanitize"], "r.yaml")


def test_file_problems(tmp_path):
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [sanitize: {\n")
    with pytest.raises(RecipeError, match="is not valid YAML"):
        load_recipe(bad)


def test_defaults_are_filled_in_and_the_name_comes_from_the_file(tiny_generator_dir, tmp_path):
    path = tmp_path / "my-recipe.yaml"
    path.write_text(f"input: {{model: {tiny_generator_dir}}}\nsteps:\n  - sanitize:\n  - export_onnx: {{}}\n")
    recipe = load_recipe(path)
    assert recipe.name == "my-recipe"
    assert recipe.resolved()["steps"][1] == {"export_onnx": {"opset": 17, "tolerance": 1e-4, "parity_batches": [1, 4],
                                                                  "fuse_conditioning": False}}
