"""Parity between two runtimes on seeded inputs: the figure every export and quantisation pass reports."""

from __future__ import annotations

import numpy as np

from ..models.inputs import random_inputs
from ..runtimes import Runtime


def parity_inputs(io: dict, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded caption-like inputs with the io spec's names and widths (``models.inputs.random_inputs``)."""
    return random_inputs(io, batch, seed)


def max_abs_error(reference: Runtime, candidate: Runtime, io: dict, batches: list[int], seed: int) -> dict[int, float]:
    """Max |reference - candidate| over the images of each batch size."""
    errors = {}
    for batch in batches:
        inputs = parity_inputs(io, batch, seed + batch)
        errors[batch] = float(np.abs(reference(inputs) - candidate(inputs)).max())
    return errors


def int8_parity(reference: Runtime, candidate: Runtime, io: dict, seed: int, batch: int = 16,
                inputs: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Max and mean |fp32 - int8| over one batch of images (pixels in [-1, 1]): ``inputs``, else seeded random ones."""
    inputs = inputs if inputs is not None else parity_inputs(io, batch, seed + batch)
    difference = np.abs(reference(inputs) - candidate(inputs))
    return {"parity_max_abs_error_vs_fp32": float(difference.max()),
            "parity_mean_abs_error_vs_fp32": float(difference.mean())}
