"""Every registered pass, tested the day it is registered: config round-trip, runs on the tiny generator,
deterministic output id, a runnable artifact with the same io."""

from __future__ import annotations

import numpy as np
import pytest

from compresskit.artifact import load_artifact
from compresskit.passes.parity import parity_inputs
from compresskit.recipe import parse_recipe
from compresskit.registry import PASSES, pass_class
from compresskit.runner import run
from compresskit.runtimes import load_runtime
from tests.passes.conftest import recipe_dict

PREREQUISITES = {"torch": [], "onnx": [{"export_onnx": {}}], "openvino": [{"export_onnx": {}}, {"export_openvino": {}}]}
FAST = {"quantize_nncf": {"subset_size": 8}, "quantize_ort": {"subset_size": 8}, "bundle": {"validation_size": 8},
        "distill": {"schedule": {"steps": 4, "batch_size": 4, "captions": 16}, "validation": {"size": 8, "every": 2}},
        "supernet": {"schedule": {"steps": 2, "batch_size": 4, "captions": 16}, "validation": {"size": 8, "every": 2},
                     "width_choices": [0.25, 0.5], "convs_choices": [1]},  # 2 sub-networks for select_subnet
        # a budget every candidate meets (tiny candidates against a tiny teacher), the least timing and scoring
        "select_subnet": {"speedup_vs_teacher_int8": 0.1, "candidates": 0, "rounds": 1, "calls": 2, "subset_size": 8,
                          "val_n": 60, "max_scored": 1}}
SUPERNET = {"select_subnet": [{"supernet": FAST["supernet"]}]}  # its input is a supernet step's artifact


def steps_for(name: str) -> list[dict]:
    before = SUPERNET.get(name, PREREQUISITES[pass_class(name).accepts[0]])
    return [*before, {name: FAST.get(name, {})}]


@pytest.mark.parametrize("name", list(PASSES))
def test_config_round_trips(name):
    cls = pass_class(name)
    config = cls.Config.model_validate(FAST.get(name, {}))
    assert cls.Config.model_validate(config.model_dump(mode="json")) == config
    assert cls.about and cls.accepts and cls.produces in ("torch", "onnx", "openvino", "bundle")


@pytest.mark.parametrize("name", list(PASSES))
def test_pass_runs_on_the_tiny_generator_with_a_deterministic_id(name, tiny_generator_dir, tmp_path):
    recipe = parse_recipe(recipe_dict(tiny_generator_dir, *steps_for(name)), "r.yaml")
    first = run(recipe, tmp_path / "a")
    second = run(recipe, tmp_path / "b")
    assert first.final.id == second.final.id
    artifact = load_artifact(first.final.path)
    assert artifact.format == pass_class(name).produces
    assert artifact.io == first.input.io
    images = load_runtime(artifact)(parity_inputs(artifact.io, 3, 0))
    assert images.shape == (3, 3, 32, 32) and np.isfinite(images).all()
    assert np.abs(images).max() <= 1.0 + 1e-6


# the pass contract: what the runner guarantees and what it refuses

from pathlib import Path  # noqa: E402

from compresskit.artifact import Format  # noqa: E402
from compresskit.errors import PassFailed, RecipeError  # noqa: E402
from compresskit.passes.base import Pass, PassContext, PassMetric, PassResult, contract_problems  # noqa: E402
from compresskit.passes.execute import produce  # noqa: E402
from compresskit.runner import input_artifact  # noqa: E402


class _Copy(Pass):
    name, about, accepts, produces = "copy", "copy the model", (Format.TORCH,), Format.TORCH
    metrics = {"copied": PassMetric("", "higher", "1 when copied")}

    def run(self, src, out_dir: Path, ctx) -> PassResult:
        from compresskit.models import load_model, save_model

        save_model(out_dir, load_model(src.path))
        return PassResult(metrics={"copied": 1.0})


def _produce(cls, src, tmp_path):
    ctx = PassContext(run_dir=tmp_path, teacher=src)
    return produce(cls, cls.name, cls.Config(), src, tmp_path / "out", "x" * 16, ctx)


def test_the_runner_carries_dataset_and_lineage_and_the_declared_metrics(tiny_generator_dir, tmp_path):
    src = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    made = _produce(_Copy, src, tmp_path)
    assert made.dataset == src.dataset and made.dataset["name"] == "emoji"
    assert made.lineage == [*src.lineage, {"pass": "copy", "id": "x" * 16}] and made.meta["copied"] == 1.0


@pytest.mark.parametrize(("body", "message"), [
    (lambda self, src, out, ctx: {"copied": 1.0}, "run\\(\\) returned dict, not a PassResult"),
    (lambda self, src, out, ctx: PassResult(metrics={}), "declared metric 'copied' is missing"),
    (lambda self, src, out, ctx: PassResult(metrics={"copied": float("nan")}), "not a finite number"),
    (lambda self, src, out, ctx: PassResult(metrics={"copied": 1.0, "other": 2.0}), "undeclared metric"),
    (lambda self, src, out, ctx: {}["boom"], "copy crashed: KeyError: 'boom' \\(at test_contract.py:"),
    (lambda self, src, out, ctx: ctx.calibration(4), "without declaring it; add 'calibration' to its needs"),
])
def test_a_pass_that_breaks_the_contract_fails_its_step_in_one_line_and_writes_nothing(tiny_generator_dir, tmp_path,
                                                                                        body, message):
    src = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    broken = type("Broken", (_Copy,), {"run": body})
    with pytest.raises(PassFailed, match=message):
        _produce(broken, src, tmp_path)
    assert not (tmp_path / "out").exists()


def test_contract_problems_name_what_a_pass_class_gets_wrong():
    assert contract_problems(_Copy) == []
    assert contract_problems(int) == [f"{int!r} is not a subclass of compresskit.passes.base.Pass"]
    odd = type("Odd", (_Copy,), {"needs": ("gpu",), "produces": "tflite"})
    assert contract_problems(odd) == ["format 'tflite' is not one of torch, onnx, openvino, bundle",
                                      "needs 'gpu', not one of teacher, captions, calibration"]


def test_needs_and_pass_metric_gates_are_checked_when_the_recipe_loads(tmp_path):
    from safetensors.torch import save_file

    from tests.passes.user_generators import conv_transpose

    weights = tmp_path / "w.safetensors"
    save_file(conv_transpose(z_dim=16).state_dict(), str(weights))
    factory = {"factory": "tests.passes.user_generators:conv_transpose", "weights": str(weights), "z_dim": 16}
    steps = [{"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {}}]
    with pytest.raises(RecipeError, match="step 3 \\(quantize_nncf\\) needs calibration .* add input.data"):
        parse_recipe({"input": factory, "steps": steps}, "r.yaml")
    parse_recipe({"input": {**factory, "data": {"name": "shapes"}}, "steps": steps}, "r.yaml")
    gate = {"metric": "int8_mac_share", "goal": "threshold", "value": 0.9, "candidate": "export_onnx"}
    with pytest.raises(RecipeError, match="export_onnx does not report 'int8_mac_share'.*name candidate 'quantize_nncf'"):
        parse_recipe({"input": {**factory, "data": {"name": "shapes"}}, "steps": steps, "gates": [gate]}, "r.yaml")
    parse_recipe({"input": {**factory, "data": {"name": "shapes"}}, "steps": steps,
                  "gates": [{**gate, "candidate": "final"}]}, "r.yaml")
