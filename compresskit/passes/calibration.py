"""Calibration and validation inputs for quantisation: seeded noise x captions from the model's train split."""

from __future__ import annotations

import numpy as np

from ..artifact import Artifact


def model_captions(artifact: Artifact, n: int, seed: int) -> list[str]:
    """``n`` captions (with repeats if the split is smaller) from the train split the generator learnt."""
    from ..metrics.evaluate import data_from_meta, eval_set

    captions = sorted(set(eval_set(data_from_meta(artifact.meta.get("generator_meta", {}))).train_captions))
    order = np.random.default_rng(seed).permutation(len(captions))
    return [captions[order[i % len(order)]] for i in range(n)]


def calibration_inputs(artifact: Artifact, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``n`` single-image input dicts: z ~ N(0, 1) from ``seed`` and MiniLM vectors of train captions."""
    from ..text import TextEncoder

    text = TextEncoder().encode(model_captions(artifact, n, seed)).numpy()
    z_dim = artifact.io["inputs"]["z"]["shape"][1]
    z = np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32)
    return [{"z": z[i : i + 1], "text": text[i : i + 1]} for i in range(n)]
