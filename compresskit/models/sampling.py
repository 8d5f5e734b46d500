"""Images from a torch generator for a list of captions, with the noise of the eval protocol or of a grid.

    images = generate_for(generator, captions, seed=0)          # uint8 NHWC; image i: caption i, noise row i
    grid = sample_grid(generator, ["red apple", "sun"], n=8, seed=0)   # (2, 8, S, S, 3); column j: one noise

``compresskit eval``, ``compresskit generate``, the model card and ``select_subnet`` draw torch images here;
the metrics that score them (``metrics.evaluate``) take images, not generators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..grid import to_images
from ..metrics.diversity import diversity_inputs
from ..metrics.evaluate import EvalSet
from ..metrics.noise import eval_noise
from ..text import TextEncoder
from .contract import io_spec
from .inputs import call_torch, caption_inputs, rows


def generate_for(generator: torch.nn.Module, captions: Sequence[str], *, seed: int, batch_size: int = 128,
                 encoder: TextEncoder | None = None, progress: Callable[[int], None] | None = None,
                 z: torch.Tensor | None = None) -> np.ndarray:
    """Image i from caption i and noise row i of ``seed``'s stream, or of ``z`` when given (uint8 NHWC)."""
    z = eval_noise(len(captions), generator.config.z_dim, seed) if z is None else z
    inputs = caption_inputs(io_spec(generator), captions, z, encoder or TextEncoder())
    chunks = []
    generator.eval()
    with torch.inference_mode():
        for start in range(0, len(captions), batch_size):
            chunks.append(to_images(call_torch(generator, rows(inputs, start, start + batch_size))))
            if progress:
                progress(min(start + batch_size, len(captions)))
    return np.concatenate(chunks)


def generate_diversity(generator: torch.nn.Module, evalset: EvalSet, *, seed: int,
                       encoder: TextEncoder | None = None) -> np.ndarray:
    """The diversity protocol's samples of a torch generator (``DIVERSITY_K`` per diversity caption)."""
    captions, z = diversity_inputs(evalset.diversity_captions, generator.config.z_dim, seed)
    return generate_for(generator, captions, seed=seed, encoder=encoder, z=z)


def sample_grid(generator: torch.nn.Module, captions: Sequence[str], *, n: int, seed: int,
                encoder: TextEncoder | None = None) -> np.ndarray:
    """``n`` images per caption in one batch, uint8 (len(captions), n, S, S, 3); sample j of every caption uses
    the same noise vector (row j of ``seed``'s stream), so the rows of a grid compare."""
    flat = [caption for caption in captions for _ in range(n)]
    z = eval_noise(n, generator.config.z_dim, seed).repeat(len(captions), 1)
    images = generate_for(generator, flat, seed=seed, z=z, encoder=encoder, batch_size=max(1, len(flat)))
    return images.reshape(len(captions), n, *images.shape[1:])
