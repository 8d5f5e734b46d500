"""Sample diversity: how different are a generator's images for one caption under different noise?

Protocol (fixed, so runs compare): ``DIVERSITY_CAPTIONS`` distinct captions of the scored split (a seeded
choice), ``DIVERSITY_K`` samples each from fixed noise rows (a stream of its own, not the eval stream);
each caption scores the mean pairwise cosine distance (1 - cos) of its samples' Lite0 features, and the
metric is the mean over captions (``stderr`` over captions). Identical samples score 0.

The real reference scores the same captions' *real* images the same way: emoji draws each caption in
several styles, so its reference is the cross-style distance; a shapes caption has exactly one rendering,
so shapes has no real reference (a shapes generator is free to vary only what captions leave open).
Losing diversity is the classic failure of compressed GANs: a student's ``diversity`` is gated against
its teacher's like any other quality figure.
"""

from __future__ import annotations

import numpy as np
import torch

from .features import extract_features
from .noise import eval_noise

DIVERSITY_K = 8
DIVERSITY_CAPTIONS = 100
SEED_OFFSET = 7_919  # the diversity noise stream is ``seed + SEED_OFFSET``, never the eval images' stream


def pick_captions(captions: list[str], m: int = DIVERSITY_CAPTIONS, seed: int = 0) -> list[str]:
    """``m`` distinct captions of a split, a seeded choice kept in split order (all of them if fewer)."""
    distinct = list(dict.fromkeys(captions))
    if len(distinct) <= m:
        return distinct
    keep = set(np.random.default_rng(seed).choice(len(distinct), m, replace=False).tolist())
    return [c for i, c in enumerate(distinct) if i in keep]


def diversity_inputs(captions: list[str], z_dim: int, seed: int, k: int = DIVERSITY_K
                     ) -> tuple[list[str], torch.Tensor]:
    """Row ``j * k + i``: caption j with noise sample i; the same rows for every model and runtime."""
    return [c for c in captions for _ in range(k)], eval_noise(len(captions) * k, z_dim, seed + SEED_OFFSET)


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean over distinct pairs of 1 - cosine similarity of the rows of ``features``."""
    f = torch.nn.functional.normalize(features.double(), dim=1)
    n = len(f)
    if n < 2:
        return float("nan")
    similarity = f @ f.T
    return float((1.0 - similarity[~torch.eye(n, dtype=torch.bool)]).mean().clamp_min(0.0))


def diversity(groups: list[np.ndarray], featurize=extract_features) -> dict:
    """Per-group mean pairwise feature distance, averaged: {value, n (groups), stderr, samples_per_caption}.

    ``featurize``: uint8 NHWC -> Lite0 features; the real reference passes the pixel-hash cached
    ``real_features``, so a benchmark computes it once, not once per candidate."""
    sizes = [len(g) for g in groups]
    features = featurize(np.concatenate(groups)) if groups else torch.empty(0)
    per_group, start = [], 0
    for size in sizes:
        per_group.append(mean_pairwise_distance(features[start : start + size]))
        start += size
    scores = np.array([s for s in per_group if np.isfinite(s)])
    if not len(scores):
        return {"value": float("nan"), "n": 0}
    stderr = float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else float("nan")
    return {"value": float(scores.mean()), "n": len(scores), "stderr": stderr,
            "samples_per_caption": int(np.median([s for s in sizes if s > 1] or [0]))}


def sample_diversity(images: np.ndarray, k: int = DIVERSITY_K) -> dict:
    """``diversity`` of images laid out as ``diversity_inputs`` draws them (k consecutive samples per caption)."""
    if len(images) % k:
        raise ValueError(f"{len(images)} images do not split into groups of {k}")
    return diversity([images[i : i + k] for i in range(0, len(images), k)])
