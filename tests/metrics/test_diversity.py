"""The diversity metric: identical samples score 0, real cross-style drawings of one caption well above it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compresskit.data.config import DEFAULT_DATA
from compresskit.metrics.diversity import DIVERSITY_K, diversity, diversity_inputs, pick_captions, sample_diversity
from compresskit.metrics.evaluate import eval_set, evaluate
from compresskit.metrics.noise import eval_noise
from compresskit.models import create_generator
from compresskit.models.sampling import generate_diversity


class NoiseBlind(torch.nn.Module):
    """A generator that draws one image per caption whatever its noise (the failure diversity must see)."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator, self.config = generator, generator.config

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.zeros_like(z), text)


@pytest.fixture(scope="module")
def emoji_eval():
    return eval_set(DEFAULT_DATA["emoji"])


def test_identical_samples_score_zero_and_real_cross_style_pairs_well_above(emoji_eval):
    real = [g for g in emoji_eval.diversity_real if len(g) > 1]
    assert len(real) == len(emoji_eval.diversity_captions) == 100, "every emoji eval caption is drawn in two styles"
    copies = np.concatenate([np.repeat(g[:1], DIVERSITY_K, axis=0) for g in real[:12]])
    assert sample_diversity(copies)["value"] < 1e-6
    reference = diversity(real)
    assert reference["value"] > 0.2 and reference["value"] > 10 * reference["stderr"], reference
    assert reference["n"] == 100 and reference["samples_per_caption"] == 2


def test_the_protocol_is_fixed_and_its_noise_is_not_the_eval_stream():
    captions = [f"c{i}" for i in range(300)]
    chosen = pick_captions(captions + captions, 100, seed=0)
    assert chosen == pick_captions(captions, 100, seed=0) and len(set(chosen)) == 100
    rows, z = diversity_inputs(chosen[:3], 16, seed=0)
    assert rows == [c for c in chosen[:3] for _ in range(DIVERSITY_K)] and z.shape == (3 * DIVERSITY_K, 16)
    assert torch.equal(z, diversity_inputs(chosen[:3], 16, seed=0)[1])
    assert not torch.allclose(z, eval_noise(3 * DIVERSITY_K, 16, 0))


def test_a_generator_that_ignores_its_noise_scores_zero_and_one_that_uses_it_more():
    small = eval_set(DEFAULT_DATA["emoji"], n=40)
    torch.manual_seed(0)
    generator = create_generator("dfgan", ngf=8, text_hidden=16, fuse_hidden=8)
    samples = generate_diversity(generator, small, seed=0)
    assert len(samples) == DIVERSITY_K * len(small.diversity_captions)
    metrics = evaluate(samples[: len(small.captions)], small, diversity_images=samples, distribution=False)
    assert metrics["diversity"]["n"] == len(small.diversity_captions)
    assert metrics["diversity_vs_real"]["value"] == pytest.approx(
        metrics["diversity"]["value"] / metrics["diversity_real"]["value"])
    blind = evaluate(samples[: len(small.captions)], small, distribution=False,
                     diversity_images=generate_diversity(NoiseBlind(generator), small, seed=0))
    assert blind["diversity"]["value"] < 1e-6 < metrics["diversity"]["value"]
