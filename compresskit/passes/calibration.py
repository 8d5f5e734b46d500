"""Captions and calibration inputs of an artifact's own dataset (``Artifact.dataset``, carried by the runner)."""

from __future__ import annotations

import numpy as np

from ..artifact import Artifact
from ..data import load_dataset
from ..data.config import DataConfig
from ..data.shapes import combination_group
from ..errors import PassFailed


def dataset_captions(dataset: dict, n: int, seed: int, split: str = "train") -> list[str]:
    """``n`` captions (with repeats if the split is smaller) from a split of ``dataset`` (train, or val to tune)."""
    config = DataConfig.model_validate(dataset)
    captions = sorted(set(load_dataset(config.name, **config.build_options()).split(split).captions))
    order = np.random.default_rng(seed).permutation(len(captions))
    return [captions[order[i % len(order)]] for i in range(n)]


def calibration_inputs(artifact: Artifact, n: int, seed: int, split: str = "train") -> list[dict[str, np.ndarray]]:
    """``n`` single-image input dicts: z ~ N(0, 1) from ``seed`` and the MiniLM inputs of ``split`` captions."""
    return _single_image_inputs(artifact, dataset_captions(artifact.dataset, n, seed, split), seed)


def _single_image_inputs(artifact: Artifact, captions: list[str], seed: int) -> list[dict[str, np.ndarray]]:
    """One input dict per caption: z ~ N(0, 1) from ``seed`` and the caption's MiniLM inputs."""
    from ..models.inputs import caption_inputs, rows  # imports torch: passes.base (which imports this) stays torch-free

    z_dim = artifact.io["inputs"]["z"]["shape"][1]
    z = np.random.default_rng(seed).standard_normal((len(captions), z_dim)).astype(np.float32)
    inputs = caption_inputs(artifact.io, captions, z)
    return [rows(inputs, i, i + 1) for i in range(len(captions))]


def unseen_attribute_inputs(artifact: Artifact, n: int, seed: int,
                            split: str = "val") -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """(``n`` single-image input dicts, their objects' labels) from ``split`` images of a shapes dataset whose
    captions hold a (colour, shape) pairing never drawn in train: what the unseen-pairing gates score."""
    config = DataConfig.model_validate(artifact.dataset)
    held = load_dataset(config.name, **config.build_options()).split(split)
    if held.labels is None:
        raise PassFailed(f"attribute accuracy needs a dataset with attribute labels (shapes); {config.name} has "
                         "none: use metric similarity_to_fp32 or psnr_vs_teacher")
    unseen = [i for i, objects in enumerate(held.labels) if combination_group(objects) == "unseen"]
    if not unseen:
        raise PassFailed(f"the {config.name} {split} split holds no unseen-pairing images; build it with more images")
    order = np.random.default_rng(seed).permutation(len(unseen))
    chosen = [unseen[order[i % len(order)]] for i in range(n)]
    return _single_image_inputs(artifact, [held.captions[i] for i in chosen], seed), held.labels[chosen]
