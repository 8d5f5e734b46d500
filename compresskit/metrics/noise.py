"""The eval protocol's noise: one seeded standard-normal stream, row i for caption i.

``compresskit eval``, the bench's quality runs and ``select_subnet`` all draw from it, so a teacher and its
students, in any runtime, see identical inputs; the diversity protocol reads the same stream at its own
seed offset (``diversity.SEED_OFFSET``).
"""

from __future__ import annotations

import torch


def eval_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The protocol's noise: row i (for caption i) of ``seed``'s standard normal stream."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
