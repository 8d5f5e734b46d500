from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compresskit.data.config import DEFAULT_DATA
from compresskit.errors import ConfigError
from compresskit.metrics.evaluate import EvalSet, eval_set, evaluate, model_data
from compresskit.models import create_generator
from compresskit.models.sampling import generate_for
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def small_shapes() -> EvalSet:
    return eval_set({"name": "shapes", "n": 600, "size": 32, "seed": 5})


def test_real_eval_images_score_as_the_floor_on_seen_and_unseen_pairings(small_shapes):
    metrics = evaluate(small_shapes.real_eval, small_shapes)
    n = len(small_shapes.captions)
    for name in ("attr_accuracy", "attr_accuracy_seen", "attr_accuracy_unseen", "attr_accuracy_unseen_1obj",
                 "attr_accuracy_unseen_2obj"):
        assert metrics[name]["value"] == 1.0 and metrics[name]["n"] >= 5, name
    groups = np.array(small_shapes.groups)
    assert metrics["attr_accuracy_seen"]["n"] == (groups == "seen").sum() > 0
    assert metrics["attr_accuracy_seen"]["n"] + metrics["attr_accuracy_unseen"]["n"] == metrics["attr_accuracy"]["n"] == n
    assert metrics["attr_accuracy_unseen"]["objects"] == (metrics["attr_accuracy_unseen_1obj"]["objects"]
                                                          + metrics["attr_accuracy_unseen_2obj"]["objects"])
    # KID is not ~0 any more: eval holds (colour, shape) pairings train never draws, a real distribution shift
    assert metrics["kid"]["n"] == n and metrics["kid"]["n_reference"] == len(small_shapes.real_train)
    assert "diversity_real" not in metrics, "a shapes caption has one rendering: no real reference"


def test_shuffled_captions_lose_attribute_accuracy_and_kid_still_scores_the_images(small_shapes):
    shuffled = small_shapes.real_eval[np.random.default_rng(0).permutation(len(small_shapes.real_eval))]
    metrics, real = evaluate(shuffled, small_shapes), evaluate(small_shapes.real_eval, small_shapes)
    assert metrics["attr_accuracy"]["value"] < 0.2
    assert metrics["kid"]["value"] == pytest.approx(real["kid"]["value"], abs=3 * real["kid"]["std"]), \
        "same images, same distribution"


def test_teacher_fidelity_and_generation_are_paired_by_index(small_shapes):
    torch.manual_seed(0)
    generator = create_generator("dfgan", ngf=4, text_hidden=16, fuse_hidden=8)
    images = generate_for(generator, small_shapes.captions, seed=3, batch_size=7)
    again = generate_for(generator, small_shapes.captions, seed=3, batch_size=60)
    # batching must not change which noise an image gets (float kernels may differ by a rounding step)
    assert np.abs(images.astype(int) - again).max() <= 1
    metrics = evaluate(images, small_shapes, teacher_images=images.copy(), distribution=False)
    assert metrics["psnr_vs_teacher"]["value"] == 100.0 and "kid" not in metrics
    other = evaluate(generate_for(generator, small_shapes.captions, seed=4), small_shapes,
                     teacher_images=images, distribution=False)
    assert other["psnr_vs_teacher"]["value"] < 60, "other noise, other images"


def test_model_data_comes_from_the_generator_metadata():
    generator = create_generator("dfgan", ngf=4)
    generator.meta = {"data": {"name": "shapes", "n": 80}}
    assert model_data(generator) == {"name": "shapes", "n": 80}
    generator.meta = {"train_config": "shapes32-base"}
    assert model_data(generator)["name"] == "shapes"


@pytest.mark.slow
def test_eval_real_json_is_the_floor():
    """Headline sanity claim: the real eval split scores perfect attributes, seen and unseen (~1.5 min)."""
    result = run_cli("eval", "--real", "--data", "shapes", "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["attr_accuracy_unseen"]["value"] == 1.0 and metrics["attr_accuracy_seen"]["value"] == 1.0
    assert metrics["kid"]["n"] == 1474 and metrics["attr_accuracy_unseen"]["n"] == 1198


@pytest.fixture(scope="module")
def emoji_eval() -> EvalSet:
    return eval_set(DEFAULT_DATA["emoji"])


def test_alignment_scores_real_eval_art_high_and_shuffled_captions_near_chance(emoji_eval):
    """The shipped emoji32-align: held-out real art finds its caption; shuffled captions do not."""
    real = evaluate(emoji_eval.real_eval, emoji_eval, distribution=False)
    shuffled = emoji_eval.real_eval[np.random.default_rng(0).permutation(len(emoji_eval.real_eval))]
    mixed = evaluate(shuffled, emoji_eval, distribution=False)
    assert real["r_precision"]["value"] >= 0.7 and real["r_precision"]["n"] == len(emoji_eval.captions)
    assert mixed["r_precision"]["value"] < 0.05
    assert real["caption_similarity"]["value"] > mixed["caption_similarity"]["value"] + 0.1


def test_the_val_split_is_scored_like_eval_and_shares_no_caption_with_it(small_shapes):
    val = eval_set({"name": "shapes", "n": 600, "size": 32, "seed": 5}, split="val")
    assert val.split == "val" and len(val.captions) > 50
    assert not set(val.captions) & set(small_shapes.captions)
    assert evaluate(val.real_eval, val, distribution=False)["attr_accuracy_unseen"]["value"] == 1.0
    with pytest.raises(ConfigError, match="--split must be one of eval, val"):
        eval_set({"name": "shapes", "n": 600, "size": 32, "seed": 5}, split="train")
