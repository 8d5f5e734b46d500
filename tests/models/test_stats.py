from __future__ import annotations

import torch
from torch import nn

from compresskit.models import create_generator
from compresskit.models.stats import generator_stats, macs_per_image


def _macs_by_hooks(generator: nn.Module) -> int:
    """An independent count: conv and linear MACs from the output shapes seen by forward hooks."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        generator(torch.zeros(1, generator.config.z_dim), torch.zeros(1, generator.config.text_dim))
    for h in handles:
        h.remove()
    return total


def test_macs_match_an_independent_count():
    generator = create_generator(ngf=8, text_hidden=16, fuse_hidden=8)
    assert macs_per_image(generator) == _macs_by_hooks(generator)


def test_halving_width_quarters_the_conv_cost():
    ratio = macs_per_image(create_generator(ngf=32)) / macs_per_image(create_generator(ngf=16))
    assert 3.5 < ratio < 4.1


def test_stats_report_params_and_widths():
    stats = generator_stats(create_generator(ngf=64))
    assert 7_000_000 < stats["params"] < 8_000_000
    assert stats["channels"] == [512, 256, 128, 64]
    assert abs(stats["weights_mb_fp32"] - stats["params"] * 4 / 2**20) < 0.01
