from __future__ import annotations

import numpy as np
import pytest
import torch

from compresskit.errors import DataError
from compresskit.generate import generate
from compresskit.metrics.fidelity import PSNR_CAP_DB, fidelity
from compresskit.models import create_generator

CAPTIONS = ["red apple", "sun", "cat face"]


def tiny_generator_images(init_seed: int) -> np.ndarray:
    torch.manual_seed(init_seed)
    generator = create_generator("dfgan", ngf=8, text_hidden=16, fuse_hidden=8)
    return generate(generator, CAPTIONS, n=4, seed=0).images.reshape(-1, 32, 32, 3)


def test_a_model_against_itself_is_perfect():
    images = tiny_generator_images(0)
    scores = fidelity(images, images.copy())
    assert scores["psnr_vs_teacher"] == PSNR_CAP_DB
    assert scores["ssim_vs_teacher"] == pytest.approx(1.0)
    assert scores["perceptual_vs_teacher"] == pytest.approx(0.0, abs=1e-5)
    assert scores["n"] == 12


def test_a_differently_initialised_model_scores_low():
    scores = fidelity(tiny_generator_images(1), tiny_generator_images(0))
    assert scores["psnr_vs_teacher"] < 30
    assert scores["ssim_vs_teacher"] < 0.9
    assert scores["perceptual_vs_teacher"] > 0.01


def test_fidelity_degrades_with_noise():
    images = tiny_generator_images(0)
    rng = np.random.default_rng(0)
    noisy = [np.clip(images + rng.normal(0, s, images.shape), 0, 255).astype(np.uint8) for s in (4, 16)]
    small, large = fidelity(noisy[0], images), fidelity(noisy[1], images)
    assert large["psnr_vs_teacher"] < small["psnr_vs_teacher"] < PSNR_CAP_DB
    assert large["ssim_vs_teacher"] < small["ssim_vs_teacher"] < 1.0


def test_mismatched_sets_are_rejected():
    images = tiny_generator_images(0)
    with pytest.raises(DataError, match="two equal, non-empty image sets"):
        fidelity(images[:3], images)
