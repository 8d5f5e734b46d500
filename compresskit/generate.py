"""Caption -> images with a trained generator: the same noise per column, so rows compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .models import load_model
from .models.sampling import sample_grid
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
    generator = load_model(model) if not isinstance(model, torch.nn.Module) else model
    return Generated(captions, sample_grid(generator, captions, n=n, seed=seed, encoder=encoder), seed)
