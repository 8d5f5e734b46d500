"""``compresskit eval``: every quality figure of one generator (or of the real data) in one call.

Protocol (fixed, so runs compare):
* reference: the dataset's real *train* split, Lite0 features cached once per split;
* generated: one image per *eval*-split caption (``n`` captions, default all of them), noise from
  ``seed``; image i uses caption i and noise row i, so a teacher and its student see identical inputs;
* ``--real``: the real eval split stands in for the generated images (the floor a model can reach);
* distribution: KID (mean, std over subsets: its ``stderr``) and FID vs the reference;
* emoji: R-precision (binomial ``stderr``) and caption similarity from the shipped aligner ``emoji32-align``;
* shapes: attribute accuracy of the generated images against their captions' labels;
* ``teacher``: PSNR / SSIM / perceptual distance against the teacher's images for the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data import load_dataset
from ..errors import ConfigError
from ..grid import to_images
from ..text import TextEncoder
from .alignment import R_CANDIDATES, aligner_installed, alignment_scores, embed_images, load_aligner
from .attributes import attribute_accuracy
from .distribution import kid_fid, real_features
from .features import extract_features
from .fidelity import fidelity

DEFAULT_DATA = {"emoji": {"name": "emoji", "size": 32, "styles": ["twemoji", "openmoji"]},
                "shapes": {"name": "shapes", "size": 32, "n": 10_000, "seed": 0, "max_objects": 2}}


@dataclass(frozen=True)
class EvalSet:
    """The eval captions (and labels for shapes) and the real train images they are judged against."""

    data: dict
    captions: list[str]
    labels: np.ndarray | None
    real_eval: np.ndarray
    real_train: np.ndarray
    train_captions: list[str]


def eval_set(data: dict, n: int | None = None) -> EvalSet:
    from ..train.config import DataConfig

    config = DataConfig.model_validate(data)
    dataset = load_dataset(config.name, **config.build_options())
    held_out, train = dataset.split("eval"), dataset.split("train")
    if n is not None and not 1 <= n <= len(held_out):
        raise ConfigError(f"--n must be between 1 and {len(held_out)} (the {config.name} eval split), got {n}")
    n = n or len(held_out)
    labels = held_out.labels[:n] if held_out.labels is not None else None
    return EvalSet(config.model_dump(mode="json"), list(held_out.captions[:n]), labels,
                   held_out.images[:n], train.images, list(train.captions))


def model_data(generator: torch.nn.Module) -> dict:
    """The dataset a generator was trained on, from its metadata (emoji when it does not say)."""
    return data_from_meta(getattr(generator, "meta", {}))


def data_from_meta(meta: dict) -> dict:
    """The dataset named by a generator's metadata (``data``, else guessed from ``train_config``; emoji)."""
    if meta.get("data"):
        return meta["data"]
    return DEFAULT_DATA["shapes" if "shapes" in str(meta.get("train_config", "")) else "emoji"]


def eval_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The protocol's noise: row i (for caption i) of ``seed``'s standard normal stream."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def generate_for(generator: torch.nn.Module, captions: list[str], *, seed: int, batch_size: int = 128,
                 encoder: TextEncoder | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Image i from caption i and noise row i of ``seed``'s stream (uint8 NHWC)."""
    text = (encoder or TextEncoder()).encode(captions)
    z = eval_noise(len(captions), generator.config.z_dim, seed)
    chunks = []
    generator.eval()
    with torch.inference_mode():
        for start in range(0, len(captions), batch_size):
            chunks.append(to_images(generator(z[start : start + batch_size], text[start : start + batch_size])))
            if progress:
                progress(min(start + batch_size, len(captions)))
    return np.concatenate(chunks)


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
    seed: int = 0,
    distribution: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Quality metrics of ``images`` (image i made for ``evalset.captions[i]``), each with its sample count.

    ``distribution=False`` skips KID/FID (for eval splits too small for them, e.g. tiny test datasets).
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
        accuracy = attribute_accuracy(images, evalset.labels)
        metrics["attr_accuracy"] = {"value": accuracy["object"], "n": len(images), "per_attribute": accuracy,
                                    "stderr": binomial_stderr(accuracy["object"], len(images))}
    if teacher_images is not None:  # the teacher's features: cached by pixel hash, so every student reuses them
        paired = fidelity(images, teacher_images, student_features=generated,
                          teacher_features=real_features(teacher_images) if distribution else None)
        for name, value in paired.items():
            if name != "n":
                metrics[name] = {"value": value, "n": len(images)}
    return metrics
