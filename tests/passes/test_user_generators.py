from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from compresskit.errors import ModelError, PassFailed, RecipeError
from compresskit.models.io import load_torch_generator
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes import user_generators

FACTORIES = {"conv_transpose": user_generators.conv_transpose, "constant_film": user_generators.constant_film}


def user_input(tmp_path, name: str) -> dict:
    torch.manual_seed(0)
    model = FACTORIES[name](z_dim=16, width=32)
    with torch.no_grad():  # trained-looking statistics, so BatchNorm is not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    weights = tmp_path / f"{name}.safetensors"
    save_file(model.state_dict(), str(weights))
    return {"factory": f"tests.passes.user_generators:{name}", "kwargs": {"width": 32, "z_dim": 16},
            "weights": str(weights), "z_dim": 16}


def test_a_user_generator_is_pruned_exported_and_reloaded_by_replaying_its_history(tmp_path):
    """ConvTranspose2d + BatchNorm: pruned; the reshaped Linear stem is kept whole and reported."""
    recipe = parse_recipe({"input": user_input(tmp_path, "conv_transpose"), "steps": [
        {"sanitize": {}}, {"prune": {"ratio": 0.5, "round_to": None}}, {"export_onnx": {}}]}, "r.yaml")
    result = run(recipe, tmp_path / "run")
    prune_meta = result.steps[1].meta
    assert prune_meta["macs_ratio"] < 0.6
    assert prune_meta["kept_whole"] == ["rgb", "stem"] and prune_meta["pruning_history_steps"] > 0
    pruned = load_torch_generator(result.steps[1].path)  # fresh factory instance + replayed history
    assert pruned.ups[0][0].out_channels == 8 and pruned.ups[0][1].num_features == 8  # BatchNorm follows
    assert pruned(torch.randn(2, 16), torch.randn(2, 384)).shape == (2, 3, 32, 32)
    assert result.steps[2].meta["parity_max_abs_error"] < 1e-4
    assert result.input.producer["factory"] == "tests.passes.user_generators:conv_transpose"


def test_a_generator_torch_pruning_cannot_prune_safely_fails_the_step_and_says_so(tmp_path):
    """Learned constant input + InstanceNorm + chunked FiLM: Torch-Pruning 1.6 finds no safe group."""
    recipe = parse_recipe({"input": user_input(tmp_path, "constant_film"), "steps": [
        {"prune": {"ratio": 0.5}}]}, "r.yaml")
    with pytest.raises(PassFailed, match="found no channel group it can prune safely"):
        run(recipe, tmp_path / "run")
    assert not list((tmp_path / "run" / "artifacts").glob("01-prune-*"))


def test_the_constant_film_generator_still_exports(tmp_path):
    recipe = parse_recipe({"input": user_input(tmp_path, "constant_film"), "steps": [
        {"sanitize": {}}, {"export_onnx": {}}, {"export_openvino": {}}]}, "r.yaml")
    result = run(recipe, tmp_path / "run")
    assert result.steps[1].meta["parity_max_abs_error"] < 1e-4 and result.steps[2].meta["parity_max_abs_error"] < 1e-4


def test_pruning_a_pruned_user_generator_accumulates_the_history(tmp_path):
    steps = [{"prune": {"ratio": 0.25, "round_to": None}}, {"prune": {"ratio": 0.25, "round_to": None}}]
    result = run(parse_recipe({"input": user_input(tmp_path, "conv_transpose"), "steps": steps}, "r.yaml"), tmp_path / "r")
    first, second = result.steps[0].meta, result.steps[1].meta
    assert second["pruning_history_steps"] > first["pruning_history_steps"]
    assert second["after"]["params"] < first["after"]["params"]
    assert load_torch_generator(result.final.path)(torch.randn(1, 16), torch.randn(1, 384)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("change", "message"), [
    ({"factory": "tests.passes.user_generators:nope"}, "module 'tests.passes.user_generators' has no 'nope'"),
    ({"factory": "no_such_package.gen:build"}, "cannot import 'no_such_package.gen'"),
    ({"factory": "not a path"}, "input.factory: must look like package.module:callable"),
    ({"weights": "missing.safetensors"}, "input.weights: no file missing.safetensors"),
    ({"z_dim": None}, "a factory input also needs weights"),
])
def test_bad_factory_inputs_are_recipe_errors(tmp_path, change, message):
    spec = {**user_input(tmp_path, "conv_transpose"), **change}
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe({"input": {k: v for k, v in spec.items() if v is not None}, "steps": [{"sanitize": {}}]}, "r.yaml")


def test_weights_that_do_not_fit_and_factories_that_return_no_module(tmp_path):
    spec = user_input(tmp_path, "conv_transpose")
    spec["kwargs"] = {"width": 64, "z_dim": 16}
    with pytest.raises(ModelError, match="does not match the factory's model"):
        run(parse_recipe({"input": spec, "steps": [{"sanitize": {}}]}, "r.yaml"), tmp_path / "run")
    spec = {**user_input(tmp_path, "conv_transpose"), "factory": "tests.passes.user_generators:not_a_module"}
    with pytest.raises(ModelError, match="returned str, not a torch.nn.Module"):
        run(parse_recipe({"input": spec, "steps": [{"sanitize": {}}]}, "r.yaml"), tmp_path / "run2")
