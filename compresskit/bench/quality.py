"""Quality of deployed artifacts: images come from each artifact's own runtime, then ``compresskit eval``'s metrics.

Every candidate and the baseline get identical inputs: the scored split's captions (MiniLM vectors, and
token states for token-conditioned generators) and
noise rows from ``seed`` (the same stream as ``compresskit eval --seed``), so ``*_vs_teacher`` pairs
image i of a candidate with image i of the baseline; and the diversity protocol's K samples per caption.
A bundle reads its caption side from its own text encoder (the compressed one), the rest from the same rows. Non-finite outputs fail the candidate's quality
measurement (no metric is reported for it, and any gate on one fails) rather than scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import CompresskitError
from ..metrics.distribution import MIN_SAMPLES
from ..metrics.diversity import diversity_inputs
from ..metrics.evaluate import EvalSet, evaluate
from ..metrics.noise import eval_noise
from ..models.inputs import caption_inputs, rows
from ..runtimes import Deployment, load_runtime
from .measure import Candidate
from .schema import METRICS, metric
from .settings import QualitySettings


class NonFiniteOutput(CompresskitError):
    """An artifact produced NaN or infinite pixels."""

    exit_code = 1


def render(runtime, name: str, inputs: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """uint8 NHWC images of a runtime for the rows of ``inputs``; NonFiniteOutput if any pixel is NaN/inf."""
    count = len(inputs["z"])
    chunks = [runtime(rows(inputs, s, s + batch_size)) for s in range(0, count, batch_size)]
    images = np.concatenate(chunks)
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).any(axis=(1, 2, 3)).sum())
        raise NonFiniteOutput(f"{name}: {bad} of {len(images)} images hold NaN/inf pixels")
    return np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def inputs_for(io: dict, captions: list[str], seed: int, z: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inputs as ``compresskit eval`` draws them (row i: caption i, noise row i of ``seed``, or of ``z``)."""
    z = eval_noise(len(captions), io["inputs"]["z"]["shape"][1], seed).numpy() if z is None else z
    return caption_inputs(io, captions, z)


def measure_quality(candidates: list[Candidate], evalset: EvalSet, settings: QualitySettings, threads: int | None,
                    sample_captions: list[str], progress: Callable[[str], None] = lambda message: None
                    ) -> tuple[dict, dict, dict]:
    """Quality of every candidate (the first is the baseline, the teacher) from its own runtime.

    Returns ({name: {metric: record}}, {name: error}, {name: sample-grid images}); the sample grid uses
    ``sample_captions`` with the same noise rows for every candidate (black tiles for a NaN candidate).
    """
    # every input any candidate reads (a token-conditioned teacher's student may read fewer); each candidate
    # gets the ones its io spec names
    io = {"inputs": {name: spec for c in candidates for name, spec in c.artifact.io["inputs"].items()}}
    z_dim = io["inputs"]["z"]["shape"][1]
    scored = inputs_for(io, evalset.captions, settings.seed)
    grid = inputs_for(io, sample_captions, settings.seed)
    diversity_captions, diversity_z = diversity_inputs(evalset.diversity_captions, z_dim, settings.seed)
    diverse = inputs_for(io, diversity_captions, settings.seed, diversity_z.numpy())
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    samples: dict[str, np.ndarray] = {}
    teacher_images = None
    for c in candidates:
        progress(f"quality of {c.name}")
        runtime = load_runtime(c.artifact, deploy=Deployment(threads=threads, precision=c.precision))

        def own(inputs: dict, captions: list[str], runtime=runtime, names=tuple(c.artifact.io["inputs"])) -> dict:
            """The inputs this candidate reads; a bundle's caption side from its own (compressed) text encoder."""
            if runtime.embed is not None:
                inputs = {"z": inputs["z"], **runtime.embed(captions)}
            return {name: inputs[name] for name in names}

        try:
            samples[c.name] = render(runtime, c.name, own(grid, sample_captions), len(sample_captions))
        except NonFiniteOutput:
            samples[c.name] = np.zeros((len(sample_captions), *evalset.real_eval.shape[1:]), np.uint8)
        try:
            images = render(runtime, c.name, own(scored, evalset.captions), settings.batch_size)
            diversity_images = render(runtime, c.name, own(diverse, diversity_captions), settings.batch_size)
        except NonFiniteOutput as exc:
            errors[c.name] = str(exc)
            continue
        is_baseline = c is candidates[0]
        if is_baseline:
            teacher_images = images
        found = evaluate(images, evalset, seed=settings.seed, distribution=len(images) >= MIN_SAMPLES,
                         diversity_images=diversity_images,
                         teacher_images=None if is_baseline or teacher_images is None else teacher_images)
        results[c.name] = {name: metric(name, rec.pop("value"), rec.pop("n", len(images)), **rec)
                           for name, rec in found.items() if name in METRICS}
    return results, errors, samples
