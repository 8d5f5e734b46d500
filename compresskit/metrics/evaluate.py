"""``compresskit eval``: every quality figure of one generator (or of the real data) in one call.

Protocol (fixed, so runs compare):
* reference: the dataset's real *train* split, Lite0 features cached once per split;
* generated: one image per caption of the scored split (``eval``, or ``val`` for tuning; ``n`` captions,
  default all of them), noise from ``seed``; image i uses caption i and noise row i, so a teacher and its
  student see identical inputs;
* ``--real``: the real images of the split stand in for the generated ones (the floor a model can reach);
* distribution: KID (mean, std over subsets: its ``stderr``) and FID vs the reference;
* emoji: R-precision (binomial ``stderr``) and caption similarity from the shipped aligner ``emoji32-align``;
* shapes: attribute accuracy of the generated images against their captions' labels, overall and on
  seen / unseen (colour, shape) pairings, the unseen ones also by object count;
* diversity (``diversity.py``): K samples of each of a fixed set of the split's captions, and the real
  reference (emoji's cross-style distance);
* ``teacher``: PSNR / SSIM / perceptual distance against the teacher's images for the same inputs.

This module scores images; a torch generator's images for these captions come from ``models.sampling``
(``generate_for``, ``generate_diversity``), a deployed artifact's from the bench's runtimes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import load_dataset
from ..data.config import DEFAULT_DATA, DataConfig
from ..data.shapes import combination_group
from ..errors import ConfigError
from ..text import TextEncoder
from .alignment import R_CANDIDATES, aligner_installed, alignment_scores, embed_images, load_aligner
from .attributes import attribute_accuracy
from .distribution import kid_fid, real_features
from .diversity import DIVERSITY_CAPTIONS, diversity, pick_captions, sample_diversity
from .features import extract_features
from .fidelity import fidelity

SCORED_SPLITS = ("eval", "val")  # report and gate on eval; tune on val


@dataclass(frozen=True)
class EvalSet:
    """The scored split's captions (and labels for shapes) and the real train images they are judged against.

    ``groups``: shapes only, per caption "seen" or "unseen" (its (colour, shape) pairings in train or not).
    ``diversity_captions`` and ``diversity_real`` (the distinct real images of each of those captions, any
    split): the diversity protocol's captions and its real reference.
    """

    data: dict
    captions: list[str]
    labels: np.ndarray | None
    real_eval: np.ndarray
    real_train: np.ndarray
    train_captions: list[str]
    split: str = "eval"
    groups: list[str] | None = None
    diversity_captions: list[str] = field(default_factory=list)
    diversity_real: list[np.ndarray] = field(default_factory=list)


def eval_set(data: dict, n: int | None = None, split: str = "eval", diversity_n: int = DIVERSITY_CAPTIONS) -> EvalSet:
    """The scored split of ``data`` (a ``DataConfig`` dict): its first ``n`` captions (all by default), their
    labels (shapes), the real images, and the diversity protocol's captions with their real reference."""
    if split not in SCORED_SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SCORED_SPLITS)}, got {split!r}")
    config = DataConfig.model_validate(data)
    dataset = load_dataset(config.name, **config.build_options())
    held_out, train = dataset.split(split), dataset.split("train")
    if not len(held_out):
        raise ConfigError(f"the {config.name} dataset has no {split} images; build it with more images")
    if n is not None and not 1 <= n <= len(held_out):
        raise ConfigError(f"--n must be between 1 and {len(held_out)} (the {config.name} {split} split), got {n}")
    n = n or len(held_out)
    labels = held_out.labels[:n] if held_out.labels is not None else None
    groups = [combination_group(objects) for objects in labels] if labels is not None else None
    chosen = pick_captions(list(held_out.captions[:n]), diversity_n)
    rows = {c: [] for c in chosen}
    for i, caption in enumerate(dataset.captions):
        if caption in rows:
            rows[caption].append(i)
    return EvalSet(config.model_dump(mode="json"), list(held_out.captions[:n]), labels,
                   held_out.images[:n], train.images, list(train.captions), split, groups,
                   chosen, [_distinct(dataset.images[rows[c]]) for c in chosen])


def _distinct(images: np.ndarray) -> np.ndarray:
    """The pixel-distinct images of a group (a shapes caption's copies are one rendering, not a reference)."""
    return np.unique(images, axis=0) if len(images) > 1 else images


def model_data(generator: torch.nn.Module) -> dict:
    """The dataset a generator was trained on, from its metadata (emoji when it does not say)."""
    return data_from_meta(getattr(generator, "meta", {}))


def data_from_meta(meta: dict) -> dict:
    """The dataset named by a generator's metadata (``data``, else guessed from ``train_config``; emoji)."""
    if meta.get("data"):
        return meta["data"]
    return DEFAULT_DATA["shapes" if "shapes" in str(meta.get("train_config", "")) else "emoji"]


def binomial_stderr(share: float, n: int) -> float:
    """Standard error of a proportion measured on ``n`` independent trials: sqrt(p (1 - p) / n)."""
    return float(np.sqrt(max(share * (1.0 - share), 0.0) / n)) if n else float("nan")


def _alignment(images: np.ndarray, evalset: EvalSet, seed: int) -> dict:
    """R-precision and caption similarity from the shipped emoji32-align encoder."""
    pool = sorted(set(evalset.train_captions) | set(evalset.captions))
    if len(pool) <= R_CANDIDATES or not aligner_installed():
        return {}  # too few distinct captions for 99 distractors (tiny test data), or no encoder shipped
    position = {c: i for i, c in enumerate(pool)}
    scores = alignment_scores(embed_images(load_aligner(), images),
                              torch.tensor([position[c] for c in evalset.captions]),
                              TextEncoder().encode(pool), seed=seed)
    detail = {"n": scores["n"], "candidates": scores["candidates"], "chance": 1 / (scores["candidates"] + 1),
              "stderr": binomial_stderr(scores["r_precision"], scores["n"])}
    return {"r_precision": {"value": scores["r_precision"], **detail},
            "caption_similarity": {"value": scores["caption_similarity"], "n": scores["n"]}}


def evaluate(
    images: np.ndarray,
    evalset: EvalSet,
    *,
    teacher_images: np.ndarray | None = None,
    diversity_images: np.ndarray | None = None,
    seed: int = 0,
    distribution: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Quality metrics of ``images`` (image i made for ``evalset.captions[i]``), each with its sample count.

    ``distribution=False`` skips KID/FID (for eval splits too small for them, e.g. tiny test datasets).
    ``diversity_images``: ``DIVERSITY_K`` samples per ``evalset.diversity_captions`` (``diversity_inputs``).
    """
    step = (lambda name, total: (lambda done: progress(name, done, total))) if progress else (lambda *_: None)
    metrics = {}
    generated = None
    if distribution:
        reference = real_features(evalset.real_train, progress=step("real train features", len(evalset.real_train)))
        generated = extract_features(images, progress=step("generated features", len(images)))
        dist = kid_fid(reference, generated, seed=seed)
        n = dist["n_fake"]
        metrics = {
            "kid": {"value": dist["kid"], "n": n, "std": dist["kid_std"], "stderr": dist["kid_std"],
                    "subset_size": dist["kid_subset_size"],
                    "subsets": dist["kid_subsets"], "n_reference": dist["n_real"]},
            "kid_std": {"value": dist["kid_std"], "n": n},
            "fid": {"value": dist["fid"], "n": n, "n_reference": dist["n_real"]},
        }
    if evalset.data["name"] == "emoji":
        metrics.update(_alignment(images, evalset, seed))
    if evalset.labels is not None:
        metrics.update(_attributes(images, evalset))
    metrics.update(_diversity(diversity_images, evalset))
    if teacher_images is not None:  # the teacher's features: cached by pixel hash, so every student reuses them
        paired = fidelity(images, teacher_images, student_features=generated,
                          teacher_features=real_features(teacher_images) if distribution else None)
        for name, value in paired.items():
            if name != "n":
                metrics[name] = {"value": value, "n": len(images)}
    return metrics


def _accuracy_record(images: np.ndarray, labels: np.ndarray) -> dict:
    """Whole-object accuracy (all four attributes right) with its counts; per attribute and per image."""
    accuracy = attribute_accuracy(images, labels)
    objects = int((labels[:, :, 0] >= 0).sum())
    return {"value": accuracy["object"], "n": len(images), "objects": objects, "per_attribute": accuracy,
            "stderr": binomial_stderr(accuracy["object"], objects)}


def _attributes(images: np.ndarray, evalset: EvalSet) -> dict:
    """attr_accuracy on every image, on seen and on unseen (colour, shape) pairings, unseen by object count."""
    labels, groups = evalset.labels, np.array(evalset.groups)
    count = (labels[:, :, 0] >= 0).sum(1)
    subsets = {"attr_accuracy": np.ones(len(images), bool), "attr_accuracy_seen": groups == "seen",
               "attr_accuracy_unseen": groups == "unseen",
               "attr_accuracy_unseen_1obj": (groups == "unseen") & (count == 1),
               "attr_accuracy_unseen_2obj": (groups == "unseen") & (count == 2)}
    return {name: _accuracy_record(images[mask], labels[mask]) for name, mask in subsets.items() if mask.any()}


def _diversity(images: np.ndarray | None, evalset: EvalSet) -> dict:
    """diversity of the generated samples and the real reference (where captions have several real images)."""
    found = {}
    real = [g for g in evalset.diversity_real if len(g) > 1]
    reference = diversity(real, featurize=real_features) if real else None
    if images is not None:
        found["diversity"] = {**sample_diversity(images), "real_reference": reference["value"] if reference else None}
        if reference:
            found["diversity_vs_real"] = {"value": found["diversity"]["value"] / reference["value"],
                                          "n": found["diversity"]["n"], "real_reference": reference["value"],
                                          "real_n": reference["n"]}
    if reference:
        found["diversity_real"] = reference
    return found
