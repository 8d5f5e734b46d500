from __future__ import annotations

import numpy as np
import pytest

from compresskit.data import build_shapes
from compresskit.metrics import attribute_accuracy, read_attributes


@pytest.fixture(scope="module")
def real():
    return build_shapes(600, seed=21)


def test_reader_is_exact_on_real_shapes(real):
    scores = attribute_accuracy(real.images, real.labels)
    assert min(scores.values()) >= 0.98, scores
    first = read_attributes(real.images[0])
    wanted = real.labels[0][real.labels[0, :, 0] >= 0]
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, wanted.tolist()))


def test_reader_tolerates_mild_noise(real):
    noise = np.random.default_rng(0).normal(0, 8, real.images.shape)
    noisy = np.clip(real.images.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    assert attribute_accuracy(noisy, real.labels)["object"] >= 0.95


def test_shuffled_captions_and_blank_images_score_near_zero(real):
    perm = np.random.default_rng(1).permutation(len(real))
    assert attribute_accuracy(real.images, real.labels[perm])["object"] < 0.1
    blank = np.full_like(real.images[:50], 255)
    assert attribute_accuracy(blank, real.labels[:50]) == dict.fromkeys(
        ["colour", "shape", "size", "position", "object", "image"], 0.0)
