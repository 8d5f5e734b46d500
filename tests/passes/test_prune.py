from __future__ import annotations

import pytest
import torch

from compresskit.errors import RecipeError
from compresskit.models import load_model
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from tests.passes.conftest import recipe_dict


def prune(model_dir, tmp_path, **config):
    result = run(parse_recipe(recipe_dict(model_dir, {"prune": config}), "r.yaml"), tmp_path / "run")
    return result.steps[-1].meta, load_model(result.final.path)


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor", "lamp", "random"])
def test_widths_shrink_by_the_ratio_and_the_model_still_runs(tiny_generator_dir, tmp_path, importance):
    meta, pruned = prune(tiny_generator_dir, tmp_path, ratio=0.5, importance=importance, round_to=None)
    assert meta["before"]["channels"] == [32, 16, 8, 4]
    assert pruned.config.channels == [16, 8, 4, 2] and pruned.config.hidden == [8, 4, 2]
    assert meta["macs_ratio"] < 0.35 and meta["params_ratio"] < 0.7
    out = pruned(torch.randn(3, 100), torch.randn(3, 384))
    assert out.shape == (3, 3, 32, 32) and torch.isfinite(out).all()


def test_stem_keeps_whole_channels_of_16_rows(tiny_generator_dir, tmp_path):
    """The stem's view to (C, 4, 4) means a kept channel keeps its 16 consecutive rows, in order."""
    original = load_model(tiny_generator_dir).stem.weight
    _, pruned = prune(tiny_generator_dir, tmp_path, ratio=0.5, round_to=None)
    rows = pruned.stem.weight
    for c in range(rows.shape[0] // 16):
        block = rows[16 * c : 16 * c + 16]
        matches = [k for k in range(original.shape[0] // 16) if torch.equal(original[16 * k : 16 * k + 16], block)]
        assert len(matches) == 1, f"channel {c} is not a whole channel of the original stem"


def test_round_to_and_per_layer_ratios(tiny_generator_dir, tmp_path):
    _, pruned = prune(tiny_generator_dir, tmp_path, ratio=0.3, round_to=4)
    assert all(w % 4 == 0 for w in pruned.config.channels[:-1] + pruned.config.hidden[:-1])
    _, only = prune(tiny_generator_dir, tmp_path / "b", ratio=0.01, round_to=None,
                    per_layer={"blocks.0.conv0": 0.5})
    assert only.config.hidden[0] == 8 and only.config.channels[0] >= 31  # 0.01 elsewhere: at most one


def test_rgb_head_and_caption_mlp_are_kept(tiny_generator_dir, tmp_path):
    meta, pruned = prune(tiny_generator_dir, tmp_path, ratio=0.5)
    assert pruned.to_rgb.out_channels == 3 and pruned.config.text_hidden == 16 and pruned.config.fuse_hidden == 8
    assert meta["kept_whole"][:2] == ["to_rgb", "text_mlp"]


def test_unknown_layer_names_are_a_recipe_error(tiny_generator_dir, tmp_path):
    with pytest.raises(RecipeError, match="no module named 'blocks.9.conv0'"):
        prune(tiny_generator_dir, tmp_path, per_layer={"blocks.9.conv0": 0.5})
