"""Elastic DF-GAN: one weight-shared supernet, many sub-networks (once-for-all, as in GAN Compression).

A supernet is an ordinary ``DFGenerator`` whose channels are ordered by importance (the teacher's most active
first, see ``passes/students.inherit_from_teacher``). A sub-network (``Subnet``) takes the **first** channels of
every stage: ``channels`` (the stem's, then each block's output), ``hidden`` (each block's first conv, two-conv
blocks only) and ``convs`` per block (1: the block's first conv writes the block's output, its second fusion and
conv are skipped). The caption MLP and every fusion MLP's hidden layer are shared whole, as in the slim students.

``elastic_forward(supernet, subnet, ...)`` runs a sub-network inside the supernet (for training: the gradients
reach the shared weights); ``extract(supernet, subnet)`` copies those slices into a stand-alone ``DFGenerator``
that computes the same function (what export, INT8 and the bundle take). Plain DF-GANs only: no cross-attention,
no separable convs.
"""

from __future__ import annotations

import random
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch.nn import functional as F

from .dfgan import DFGenerator, GeneratorConfig


class Subnet(BaseModel):
    """Widths of one sub-network: the first ``channels[i]`` / ``hidden[i]`` channels of each stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[int, ...]  # the stem's, then each block's output
    hidden: tuple[int, ...]  # each block's first conv output (read only where convs is 2)
    convs: Literal[1, 2]

    def key(self) -> str:
        return f"c{'-'.join(map(str, self.channels))}_h{'-'.join(map(str, self.hidden))}_k{self.convs}"


def check_supernet(config: GeneratorConfig) -> None:
    if config.attention or config.separable:
        raise ValueError("an elastic supernet needs a plain DF-GAN (no cross-attention, no separable convs)")
    if list(config.hidden) != list(config.channels[1:]):
        raise ValueError("an elastic supernet needs hidden widths equal to the block outputs (as slim students have)")


def from_factors(teacher: GeneratorConfig, factors: list[float], convs: int) -> Subnet:
    """The sub-network with the teacher's widths times ``factors`` (one per stage, as ``distill``'s ``width``)."""
    channels = tuple(max(1, round(w * f)) for w, f in zip(teacher.channels, factors))
    hidden = tuple(max(1, round(w * f)) for w, f in zip(teacher.hidden, factors[1:]))
    return Subnet(channels=channels, hidden=hidden, convs=convs)


def largest(config: GeneratorConfig) -> Subnet:
    return Subnet(channels=tuple(config.channels), hidden=tuple(config.hidden), convs=config.convs_per_block)


def validate_subnet(config: GeneratorConfig, subnet: Subnet) -> None:
    """ValueError unless ``subnet`` fits inside the supernet ``config``."""
    if len(subnet.channels) != len(config.channels) or len(subnet.hidden) != len(config.hidden):
        raise ValueError(f"sub-network {subnet.key()} has {len(subnet.channels)} stages; the supernet has "
                         f"{len(config.channels)}")
    widths = [*zip(subnet.channels, config.channels), *zip(subnet.hidden, config.hidden)]
    if any(not 1 <= w <= top for w, top in widths):
        raise ValueError(f"sub-network {subnet.key()} is wider than the supernet {largest(config).key()}")
    if subnet.convs > config.convs_per_block:
        raise ValueError(f"sub-network {subnet.key()} has {subnet.convs} convs per block; the supernet "
                         f"{config.convs_per_block}")


def subnet_config(config: GeneratorConfig, subnet: Subnet) -> GeneratorConfig:
    validate_subnet(config, subnet)
    hidden = list(subnet.hidden) if subnet.convs == 2 else list(subnet.channels[1:])
    return GeneratorConfig(**{**config.model_dump(), "channels": list(subnet.channels), "hidden": hidden,
                              "convs_per_block": subnet.convs})


def _conv(conv: nn.Conv2d, x: torch.Tensor, out: int) -> torch.Tensor:
    return F.conv2d(x, conv.weight[:out, :x.shape[1]], conv.bias[:out], padding=conv.padding)


def _affine(affine: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]

    def predict(mlp: nn.Sequential) -> torch.Tensor:
        return F.linear(mlp[1](mlp[0](cond)), mlp[2].weight[:c], mlp[2].bias[:c])[:, :, None, None]

    return predict(affine.gamma) * x + predict(affine.beta)


def _fusion(fusion: nn.Module, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    x = F.leaky_relu(_affine(fusion.affine0, x, cond), 0.2)
    return F.leaky_relu(_affine(fusion.affine1, x, cond), 0.2)


def elastic_forward(supernet: DFGenerator, subnet: Subnet, z: torch.Tensor, text: torch.Tensor,
                    taps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The image the sub-network draws, computed on the supernet's shared weights (train or eval mode alike);
    ``taps`` (a dict), if given, receives each block's output as ``blocks.i`` (for feature distillation)."""
    cond = torch.cat([z, supernet.text_mlp(text)], dim=1)
    stem = subnet.channels[0] * 16
    x = F.linear(cond, supernet.stem.weight[:stem], supernet.stem.bias[:stem]).view(len(z), subnet.channels[0], 4, 4)
    for i, block in enumerate(supernet.blocks):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        out = subnet.channels[i + 1]
        h = _fusion(block.fuse0, x, cond)
        if subnet.convs == 2:
            h = _fusion(block.fuse1, _conv(block.conv0, h, subnet.hidden[i]), cond)
            h = _conv(block.conv1, h, out)
        else:
            h = _conv(block.conv0, h, out)
        x = _conv(block.shortcut, x, out) + h
        if taps is not None:
            taps[f"blocks.{i}"] = x
    rgb = _conv(supernet.to_rgb, F.leaky_relu(x, 0.2), 3)
    return rgb if supernet.training else rgb.clamp(-1.0, 1.0)


@torch.no_grad()
def extract(supernet: DFGenerator, subnet: Subnet) -> DFGenerator:
    """A stand-alone generator computing ``elastic_forward(supernet, subnet, ...)``, in eval mode, meta copied."""
    check_supernet(supernet.config)
    student = DFGenerator(subnet_config(supernet.config, subnet))
    source = supernet.state_dict()
    for name, tensor in student.state_dict().items():
        full = source[name]
        tensor.copy_(full[tuple(slice(0, n) for n in tensor.shape)])  # the first channels of every dimension
    student.meta = dict(getattr(supernet, "meta", {}))
    return student.eval()


def sample(teacher: GeneratorConfig, factors: list[float], convs: list[int],
           rng: random.Random) -> Subnet:
    """A random sub-network: each stage's factor drawn from ``factors`` on its own, one depth from ``convs``."""
    return from_factors(teacher, [rng.choice(factors) for _ in teacher.channels], rng.choice(convs))
