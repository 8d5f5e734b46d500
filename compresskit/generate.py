"""Caption -> images with a trained generator: the same noise per column, so rows compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .grid import to_images
from .models import io_spec, load_model
from .models.inputs import call_torch, caption_inputs
from .text import TextEncoder, check_captions


@dataclass(frozen=True)
class Generated:
    captions: list[str]
    images: np.ndarray  # uint8 (len(captions), n, S, S, 3)
    seed: int


def generate(
    model: str | Path | torch.nn.Module,
    captions: list[str],
    *,
    n: int = 8,
    seed: int = 0,
    encoder: TextEncoder | None = None,
) -> Generated:
    """``n`` images per caption; sample ``j`` of every caption uses the same noise vector."""
    captions = check_captions(captions)
    generator = load_model(model) if not isinstance(model, torch.nn.Module) else model.eval()
    z = torch.randn(n, generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    rows = [caption for caption in captions for _ in range(n)]
    with torch.inference_mode():
        images = call_torch(generator, caption_inputs(io_spec(generator), rows, z.repeat(len(captions), 1),
                                                      encoder or TextEncoder()))
    pixels = to_images(images).reshape(len(captions), n, *images.shape[2:], 3)
    return Generated(captions, pixels, seed)
