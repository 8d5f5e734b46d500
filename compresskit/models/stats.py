"""Size and cost of a generator: parameters, MACs per image (from PyTorch's own FLOP counter)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .contract import io_spec
from .inputs import as_tensors, random_inputs


def macs_per_image(generator: torch.nn.Module) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (matmuls and convolutions; FLOPs / 2)."""
    inputs = as_tensors(random_inputs(io_spec(generator), 1, 0))
    counter = FlopCounterMode(display=False)
    flags = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)  # the counter's module tracker trips over leaf parameters used as inputs
    try:
        with counter, torch.no_grad():
            generator(*inputs.values())
    finally:
        for p, flag in zip(generator.parameters(), flags):
            p.requires_grad_(flag)
    return counter.get_total_flops() // 2


def generator_stats(generator: torch.nn.Module) -> dict:
    params = sum(p.numel() for p in generator.parameters())
    return {
        "params": params,
        "macs_per_image": macs_per_image(generator),
        "weights_mb_fp32": round(params * 4 / 2**20, 2),
        "image_size": generator.config.image_size,
        **({"channels": generator.config.channels, "hidden": generator.config.hidden}
           if hasattr(generator.config, "channels") else {}),  # the DF-GAN's widths by stage; a user model has none
    }
