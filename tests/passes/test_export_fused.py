"""export_onnx's merged-conditioning form (models.fused) through the pass."""

from __future__ import annotations

import onnx
import pytest

from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes.conftest import recipe_dict
from tests.passes.test_user_generators import user_input


def _matmuls(path) -> int:
    return sum(node.op_type in ("Gemm", "MatMul") for node in onnx.load(str(path)).graph.node)


def test_export_onnx_merges_the_conditioning_on_request_and_refuses_a_user_generator(tiny_generator_dir, tmp_path):
    counts = {}
    for fuse in (False, True):
        steps = [{"distill": {"schedule": {"steps": 2, "batch_size": 4, "captions": 8}, "validation": {"size": 8},
                              "student": {"kind": "slim", "width": 0.5, "convs_per_block": 1}}},
                 {"export_onnx": {"fuse_conditioning": fuse}}]
        result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / f"run{fuse}")
        assert result.final.meta["parity_max_abs_error"] < 1e-4, "the parity check holds the merged graph to torch"
        assert result.final.meta["fused_conditioning"] is fuse
        counts[fuse] = _matmuls(result.final.path / "model.onnx")
    # one conv per block, 3 blocks: 12 fusion MLPs (24 matmuls) become 2
    assert counts[False] - counts[True] == 22, counts

    user = {"name": "u", "input": user_input(tmp_path, "dcgan"), "seed": 0, "threads": 1,
            "steps": [{"export_onnx": {"fuse_conditioning": True}}]}
    with pytest.raises(Exception, match="fuse_conditioning applies to the project's DF-GAN generators.*remove"):
        run(parse_recipe(user, "u.yaml"), tmp_path / "user")
