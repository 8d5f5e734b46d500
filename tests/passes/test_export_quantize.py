from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes.conftest import recipe_dict


@pytest.fixture(scope="module")
def exported(tiny_generator_dir, tmp_path_factory):
    recipe = parse_recipe(recipe_dict(tiny_generator_dir, {"sanitize": {}}, {"export_onnx": {}},
                                      {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 16}}), "r.yaml")
    return run(recipe, tmp_path_factory.mktemp("run") / "run")


def test_exports_match_torch_within_tolerance(exported):
    onnx_step, ov_step = exported.steps[1], exported.steps[2]
    assert onnx_step.meta["parity_max_abs_error"] < 1e-4
    assert ov_step.meta["parity_max_abs_error"] < 1e-4
    model = onnx.load(onnx_step.path + "/model.onnx")
    assert [i.name for i in model.graph.input] == ["z", "text"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.opset_import[0].version >= 17


def test_nncf_int8_model_holds_fake_quantize_ops_on_most_compute(exported):
    meta = exported.steps[3].meta
    assert meta["int8_ops"] > 0 and meta["int8_mac_share"] > 0.8
    xml = (exported.final.path / "model.xml").read_text()
    assert xml.count('type="FakeQuantize"') >= meta["int8_ops"]
    assert 0 < meta["parity_max_abs_error_vs_fp32"] < 0.5
    assert 0 < meta["parity_mean_abs_error_vs_fp32"] <= meta["parity_tolerance"] == 0.1


def test_the_int8_parity_check_feeds_val_captions_not_random_inputs(exported):
    from compresskit.artifact import load_artifact
    from compresskit.models.inputs import stack_rows
    from compresskit.passes.calibration import calibration_inputs
    from compresskit.passes.parity import int8_parity
    from compresskit.runtimes import OPENVINO_XML, openvino_runtime

    fp32 = load_artifact(Path(exported.steps[2].path))
    inputs = stack_rows(calibration_inputs(fp32, 16, 0 + 2, "val"))  # the recipe's seed (0) + 2, as the pass draws
    runtimes = openvino_runtime(fp32.file(OPENVINO_XML)), openvino_runtime(exported.final.file(OPENVINO_XML))
    on_captions = int8_parity(*runtimes, fp32.io, 0, inputs=inputs)
    on_random = int8_parity(*runtimes, fp32.io, 0)
    meta = exported.steps[3].meta
    assert meta["parity_mean_abs_error_vs_fp32"] == pytest.approx(on_captions["parity_mean_abs_error_vs_fp32"], rel=1e-6)
    assert on_captions["parity_mean_abs_error_vs_fp32"] != pytest.approx(on_random["parity_mean_abs_error_vs_fp32"],
                                                                         rel=1e-3)


def test_nncf_step_fails_when_int8_parity_to_fp32_exceeds_its_bound(tiny_generator_dir, tmp_path):
    from compresskit.errors import PassFailed

    steps = [{"export_onnx": {}}, {"export_openvino": {}},
             {"quantize_nncf": {"subset_size": 16, "max_mean_abs_error": 1e-6}}]
    with pytest.raises(PassFailed, match=r"INT8 output differs from fp32 by [0-9.]+ mean abs \(max_mean_abs_error 1e-06\)"):
        run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run")
    assert not list((tmp_path / "run" / "artifacts").glob("03-quantize_nncf-*")), "a failed step leaves no artifact"


def test_ort_int8_model_has_qdq_nodes(tiny_generator_dir, tmp_path):
    recipe = parse_recipe(recipe_dict(tiny_generator_dir, {"export_onnx": {}},
                                      {"quantize_ort": {"subset_size": 8, "calibration": "percentile"}}), "r.yaml")
    result = run(recipe, tmp_path / "run")
    ops = {n.op_type for n in onnx.load(str(result.final.path / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.steps[-1].meta["int8_ops_fraction"] > 0.8


def test_accuracy_controlled_nncf_keeps_the_drop_within_max_drop(tiny_generator_dir, tmp_path):
    steps = [{"export_onnx": {}}, {"export_openvino": {}},
             {"quantize_nncf": {"mode": "accuracy_control", "subset_size": 16, "validation_size": 8, "max_drop": 0.01}}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert meta["val_similarity_to_fp32_fp32"] == 1.0
    assert meta["val_similarity_to_fp32_int8"] >= 1.0 - 0.01


def test_accuracy_control_can_hold_the_gates_own_figure_psnr_vs_the_teacher(tiny_generator_dir, tmp_path):
    """A pruned student quantised with PSNR against the torch teacher (val captions) as the figure to hold."""
    steps = [{"prune": {"ratio": 0.5, "round_to": None}}, {"export_onnx": {}}, {"export_openvino": {}},
             {"quantize_nncf": {"mode": "accuracy_control", "metric": "psnr_vs_teacher", "subset_size": 16,
                                "validation_size": 8, "max_drop": 0.2}}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert 5 < meta["val_psnr_vs_teacher_fp32"] < 60, "a pruned student is near, not equal to, its teacher"
    assert meta["val_psnr_vs_teacher_int8"] >= meta["val_psnr_vs_teacher_fp32"] - 0.2


def test_accuracy_control_can_hold_caption_similarity_through_the_shipped_aligner(tiny_generator_dir, tmp_path):
    """The figure behind the R-precision gate, per image: the aligner's image vector against the caption's."""
    steps = [{"export_onnx": {}}, {"export_openvino": {}},
             {"quantize_nncf": {"mode": "accuracy_control", "metric": "caption_similarity", "subset_size": 16,
                                "validation_size": 8, "max_drop": 0.01}}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert -1 <= meta["val_caption_similarity_fp32"] <= 1 and meta["val_caption_similarity_fp32"] != 0
    assert meta["val_caption_similarity_int8"] >= meta["val_caption_similarity_fp32"] - 0.01


def test_accuracy_control_can_hold_unseen_pairing_accuracy_on_shapes_and_refuses_data_without_labels(
        tiny_generator_dir, tmp_path):
    """The unseen-pairing gate's own figure on val: read from the images by the attribute reader."""
    from compresskit.artifact import load_artifact
    from compresskit.data.shapes import HELD_PAIRS
    from compresskit.passes.calibration import unseen_attribute_inputs

    shapes = {"name": "shapes", "n": 600, "size": 32, "seed": 5}
    quantize = {"quantize_nncf": {"mode": "accuracy_control", "metric": "attr_accuracy_unseen", "subset_size": 16,
                                  "validation_size": 8, "max_drop": 0.5}}
    recipe = recipe_dict(tiny_generator_dir, {"export_onnx": {}}, {"export_openvino": {}}, quantize)
    recipe["input"]["data"] = shapes
    result = run(parse_recipe(recipe, "r.yaml"), tmp_path / "run")
    meta = result.steps[-1].meta
    assert 0.0 <= meta["val_attr_accuracy_unseen_int8"] <= 1.0 and 0.0 <= meta["val_attr_accuracy_unseen_fp32"] <= 1.0
    items, labels = unseen_attribute_inputs(load_artifact(result.steps[-1].path), 8, 1, "val")
    val_pairs = {pair for pair, split in HELD_PAIRS.items() if split == "val"}
    assert all(any((int(o[0]), int(o[1])) in val_pairs for o in objects if o[0] >= 0) for objects in labels)
    assert len(items) == 8 and items[0]["z"].shape[0] == 1
    emoji = recipe_dict(tiny_generator_dir, {"export_onnx": {}}, {"export_openvino": {}}, quantize)
    with pytest.raises(Exception, match="needs a dataset with attribute labels"):
        run(parse_recipe(emoji, "r2.yaml"), tmp_path / "run2")
