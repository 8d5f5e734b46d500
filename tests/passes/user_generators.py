"""Generators defined only in the tests, built the way users build theirs (imported by recipes by name)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvTransposeGenerator(nn.Module):
    """Linear stem -> reshape -> ConvTranspose2d + BatchNorm + ReLU blocks -> RGB conv -> tanh."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        self.width = width
        self.stem = nn.Linear(z_dim + text_dim, width * 16)
        self.ups = nn.Sequential(*[
            nn.Sequential(nn.ConvTranspose2d(width >> i, width >> (i + 1), 4, 2, 1), nn.BatchNorm2d(width >> (i + 1)),
                          nn.ReLU()) for i in range(3)])
        self.rgb = nn.Conv2d(width >> 3, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([z, text], 1))
        x = x.view(x.shape[0], -1, 4, 4)
        return torch.tanh(self.rgb(self.ups(x)))


class FiLMBlock(nn.Module):
    def __init__(self, cond_dim: int, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.InstanceNorm2d(c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)  # one projection, chunked into scale and shift

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(F.interpolate(x, scale_factor=2.0)))
        gamma, beta = self.film(cond).chunk(2, dim=1)
        return F.relu(x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])


class ConstantFiLMGenerator(nn.Module):
    """Learned constant 4x4 input, InstanceNorm, chunked FiLM projections from [z, text]."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, width, 4, 4))
        cond = z_dim + text_dim
        self.blocks = nn.ModuleList(FiLMBlock(cond, width >> i, width >> (i + 1)) for i in range(3))
        self.rgb = nn.Conv2d(width >> 3, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([z, text], 1)
        x = self.const.expand(z.shape[0], -1, -1, -1)
        for block in self.blocks:
            x = block(x, cond)
        return torch.tanh(self.rgb(x))


def conv_transpose(**kwargs) -> nn.Module:
    return ConvTransposeGenerator(**kwargs)


def constant_film(**kwargs) -> nn.Module:
    return ConstantFiLMGenerator(**kwargs)


def not_a_module(**kwargs):
    return "a string"
