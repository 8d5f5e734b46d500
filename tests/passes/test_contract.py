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
FAST = {"quantize_nncf": {"subset_size": 8}, "quantize_ort": {"subset_size": 8},
        "distill": {"steps": 4, "batch_size": 4, "captions": 16, "validation_size": 8, "validate_every": 2}}


def steps_for(name: str) -> list[dict]:
    return [*PREREQUISITES[pass_class(name).accepts[0]], {name: FAST.get(name, {})}]


@pytest.mark.parametrize("name", list(PASSES))
def test_config_round_trips(name):
    cls = pass_class(name)
    config = cls.Config.model_validate(FAST.get(name, {}))
    assert cls.Config.model_validate(config.model_dump(mode="json")) == config
    assert cls.about and cls.accepts and cls.produces in ("torch", "onnx", "openvino")


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
