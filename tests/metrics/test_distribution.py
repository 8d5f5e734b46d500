"""Sanity checks that can fail: KID must see no difference between halves of one image set, and must
grow with the strength of a corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from compresskit.data import load_dataset
from compresskit.errors import DataError
from compresskit.metrics.distribution import kid_fid, real_features
from compresskit.metrics.features import extract_features


@pytest.fixture(scope="module")
def shapes_images() -> np.ndarray:
    images = load_dataset("shapes", n=400, size=32, seed=3).images
    return images[np.random.default_rng(0).permutation(len(images))]


def blur(images: np.ndarray, radius: float) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images])


def noise(images: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)


def test_two_halves_of_one_set_have_kid_near_zero(shapes_images):
    features = extract_features(shapes_images)
    scores = kid_fid(features[:200], features[200:])
    assert abs(scores["kid"]) < 3 * scores["kid_std"]
    assert scores["n_real"] == scores["n_fake"] == 200 and scores["kid_subset_size"] == 100


@pytest.mark.parametrize("corrupt, strengths", [(blur, [0.5, 1.0, 2.0]), (noise, [8, 24, 64])])
def test_kid_grows_with_corruption_strength(shapes_images, corrupt, strengths):
    real = extract_features(shapes_images[:200])
    kids = [kid_fid(real, extract_features(corrupt(shapes_images[200:], s)))["kid"] for s in strengths]
    clean = kid_fid(real, extract_features(shapes_images[200:]))
    assert clean["kid"] < kids[0] < kids[1] < kids[2], kids
    assert kids[0] > clean["kid"] + 3 * clean["kid_std"]


def test_real_features_are_cached_and_a_damaged_cache_is_rebuilt(shapes_images, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSKIT_CACHE", str(tmp_path))
    first = real_features(shapes_images[:64])
    [cached] = list((tmp_path / "features").iterdir())
    assert real_features(shapes_images[:64]).equal(first)
    cached.write_bytes(b"garbage")
    assert real_features(shapes_images[:64]).equal(first)


def test_too_few_samples_is_a_clear_error(shapes_images):
    features = extract_features(shapes_images[:60])
    with pytest.raises(DataError, match="at least 50 real and generated images, got 60 and 10"):
        kid_fid(features, features[:10])


def test_the_openvino_features_are_the_torch_modules_own(shapes_images):
    import torch

    from compresskit.metrics.features import lite0

    images = shapes_images[:40]
    with torch.inference_mode():
        reference = lite0()(torch.from_numpy(images).permute(0, 3, 1, 2))
    found = extract_features(images, batch_size=16)  # batches of 16, 16, 8: any batch size
    assert found.shape == reference.shape and found.dtype == torch.float32
    assert (found - reference).abs().max() <= 1e-4 * reference.abs().max()
    assert extract_features(images[:0]).shape == (0, reference.shape[1])


def test_fid_against_one_real_set_is_the_same_whether_its_statistics_are_kept_or_recomputed():
    from torchmetrics.image.fid import FrechetInceptionDistance

    from compresskit.metrics import distribution

    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 1280, generator=g)
    fakes = [torch.randn(120, 1280, generator=g) * scale + shift for scale, shift in ((1.0, 0.0), (1.3, 0.2), (0.7, -0.1))]
    distribution._REAL_FID.clear()
    kept = [kid_fid(real, fake)["fid"] for fake in fakes]  # the real side accumulated once, then kept
    assert len(distribution._REAL_FID) == 1
    for fake, found in zip(fakes, kept):
        fresh = FrechetInceptionDistance(feature=distribution._Precomputed())
        fresh.update(real.double(), real=True)
        fresh.update(fake.double(), real=False)
        assert found == pytest.approx(float(fresh.compute()), rel=1e-9)
    assert len(set(kept)) == 3
    other = kid_fid(real + 0.5, fakes[0])["fid"]  # a new real set replaces the kept one
    assert other != kept[0] and len(distribution._REAL_FID) == 1
