from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from compresskit.bench.report import bench_run
from compresskit.errors import ModelError, PassFailed, RecipeError
from compresskit.models.io import load_model
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes import user_generators

SHAPES = {"name": "shapes", "n": 600, "size": 32, "seed": 5}  # a small dataset: captions for calibration and eval
STYLES = ["dcgan", "pix2pix_film", "stylegan2", "sagan", "pixelshuffle"]  # styles the project was not designed for


def user_input(tmp_path, name: str, width: int = 32) -> dict:
    torch.manual_seed(0)
    model = getattr(user_generators, name)(z_dim=16, width=width)
    with torch.no_grad():  # trained-looking statistics, so BatchNorm is not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    weights = tmp_path / f"{name}.safetensors"
    save_file(model.state_dict(), str(weights))
    return {"factory": f"tests.passes.user_generators:{name}", "kwargs": {"width": width, "z_dim": 16},
            "weights": str(weights), "z_dim": 16, "data": SHAPES}


FAST_DISTILL = {"schedule": {"steps": 12, "batch_size": 8, "captions": 32}, "validation": {"size": 8, "every": 4, "patience": 10}}
FAST_BENCH = {"candidates": ["prune", "distill", "quantize_nncf"],
              "speed": {"threads": [1], "batch_sizes": [1], "warmup": 1, "warmup_s": 0, "rounds": 2, "per_round": 3,
                        "exported_teacher": False, "probe": False, "peak": False},
              "quality": {"batch_size": 16, "diversity_captions": 12}}


@pytest.mark.parametrize("style", STYLES)
def test_every_pass_works_on_a_generator_style_the_project_never_saw(style, tmp_path):
    """sanitize -> prune 0.5 -> distil -> ONNX -> OpenVINO -> INT8 -> bench, with real libraries, no traceback."""
    steps = [{"sanitize": {}}, {"prune": {"ratio": 0.5, "round_to": None}}, {"distill": FAST_DISTILL},
             {"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 16}}]
    gates = [{"metric": "int8_mac_share", "goal": "threshold", "value": 0.5, "candidate": "quantize_nncf"},
             {"metric": "params_ratio", "goal": "threshold", "value": 0.99, "candidate": "prune"}]
    recipe = parse_recipe({"input": user_input(tmp_path, style), "threads": 1, "steps": steps, "bench": FAST_BENCH,
                           "gates": gates}, f"{style}.yaml")
    result = run(recipe, tmp_path / "run")
    _, prune, distill, onnx, openvino, int8 = (r.meta for r in result.steps)
    assert prune["after"]["params"] < prune["before"]["params"] and prune["params_ratio"] < 1
    assert prune["narrowed_layers"] > 0 and set(prune["kept_whole_why"]) == set(prune["kept_whole"])
    assert distill["steps_run"] == 12 and distill["params_ratio"] == pytest.approx(prune["params_ratio"])  # the pruned input
    assert onnx["parity_max_abs_error"] < 1e-4 and openvino["parity_max_abs_error"] < 1e-4
    assert int8["int8_mac_share"] > 0.5 and int8["parity_mean_abs_error_vs_fp32"] <= 0.1
    student = load_model(result.steps[2].path)  # factory + replayed pruning history + distilled weights
    assert student(torch.randn(2, 16), torch.randn(2, 384)).shape == (2, 3, 32, 32)
    report = bench_run(tmp_path / "run")
    final = report.candidate("final")
    assert final.name == "quantize_nncf" and final.backend == "openvino"
    assert final.value("latency_ms_p50") > 0 and final.metrics["kid"].n == 93
    assert final.value("int8_mac_share") == int8["int8_mac_share"]
    assert report.verdict == "pass", report.failed_gates


def test_a_factory_student_is_a_slimmer_instance_of_the_users_own_model(tmp_path):
    steps = [{"distill": {**FAST_DISTILL, "student": {"kind": "factory", "kwargs": {"width": 8}}}}, {"export_onnx": {}}]
    result = run(parse_recipe({"input": user_input(tmp_path, "dcgan"), "steps": steps}, "r.yaml"), tmp_path / "run")
    meta = result.steps[0].meta
    assert meta["student"] == "factory" and meta["params_ratio"] < 0.3
    student = load_model(result.steps[0].path)
    assert type(student).__name__ == "DCGANGenerator" and student.config.spec.kwargs == {"width": 8, "z_dim": 16}
    assert result.steps[1].meta["parity_max_abs_error"] < 1e-4


def test_a_slim_student_for_a_user_generator_is_compresskits_own_architecture_on_the_same_io(tmp_path):
    steps = [{"distill": {**FAST_DISTILL, "student": {"kind": "slim", "width": 0.25}}}, {"export_onnx": {}}]
    result = run(parse_recipe({"input": user_input(tmp_path, "stylegan2"), "steps": steps}, "r.yaml"), tmp_path / "run")
    student = load_model(result.steps[0].path)
    assert type(student).__name__ == "DFGenerator" and (student.config.z_dim, student.config.image_size) == (16, 32)
    assert result.final.io == result.input.io and result.steps[0].meta["val_l1_best"] < result.steps[0].meta["val_l1_start"]


def test_feature_loss_on_layers_a_user_model_lacks_is_one_clear_error(tmp_path):
    steps = [{"distill": {**FAST_DISTILL, "losses": {"pixel": 1.0, "feature": 1.0}}}]
    with pytest.raises(PassFailed, match="has no layer 'blocks.0' for the feature loss; set losses.feature_layers"):
        run(parse_recipe({"input": user_input(tmp_path, "dcgan"), "steps": steps}, "r.yaml"), tmp_path / "run")


def test_a_user_generator_is_pruned_exported_and_reloaded_by_replaying_its_history(tmp_path):
    """ConvTranspose2d + BatchNorm: pruned; the reshaped Linear stem is kept whole and reported."""
    recipe = parse_recipe({"input": user_input(tmp_path, "conv_transpose"), "steps": [
        {"sanitize": {}}, {"prune": {"ratio": 0.5, "round_to": None}}, {"export_onnx": {}}]}, "r.yaml")
    result = run(recipe, tmp_path / "run")
    prune_meta = result.steps[1].meta
    assert prune_meta["macs_ratio"] < 0.6
    assert prune_meta["kept_whole"] == ["rgb", "stem"] and prune_meta["pruning_history_steps"] > 0
    assert "reshaped into a feature map" in prune_meta["kept_whole_why"]["stem"]
    pruned = load_model(result.steps[1].path)  # fresh factory instance + replayed history
    assert pruned.ups[0][0].out_channels == 8 and pruned.ups[0][1].num_features == 8  # BatchNorm follows
    assert pruned(torch.randn(2, 16), torch.randn(2, 384)).shape == (2, 3, 32, 32)
    assert result.steps[2].meta["parity_max_abs_error"] < 1e-4
    assert result.input.producer["factory"] == "tests.passes.user_generators:conv_transpose"


def test_a_generator_with_no_safe_channel_group_is_written_unchanged_and_the_run_says_so(tmp_path):
    """Learned constant input + InstanceNorm + chunked FiLM: Torch-Pruning 1.6 finds no safe group."""
    recipe = parse_recipe({"input": user_input(tmp_path, "constant_film"), "steps": [
        {"prune": {"ratio": 0.5}}, {"export_onnx": {}}]}, "r.yaml")
    logs = []
    result = run(recipe, tmp_path / "run", on_event=lambda event: logs.append(event.message or ""))
    assert result.steps[0].meta["params_ratio"] == 1.0 and result.steps[0].meta["narrowed_layers"] == 0
    assert any("found no channel group it can prune safely" in m for m in logs)
    assert result.steps[1].meta["parity_max_abs_error"] < 1e-4


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
    assert load_model(result.final.path)(torch.randn(1, 16), torch.randn(1, 384)).shape == (1, 3, 32, 32)


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
    spec["kwargs"] = {"width": 64, "z_dim": 16}  # weights saved at width 32
    with pytest.raises(ModelError, match="does not match the factory's model"):
        run(parse_recipe({"input": spec, "steps": [{"sanitize": {}}]}, "r.yaml"), tmp_path / "run")
    spec = {**user_input(tmp_path, "conv_transpose"), "factory": "tests.passes.user_generators:not_a_module"}
    with pytest.raises(ModelError, match="returned str, not a torch.nn.Module"):
        run(parse_recipe({"input": spec, "steps": [{"sanitize": {}}]}, "r.yaml"), tmp_path / "run2")
