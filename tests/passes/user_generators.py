"""Generators defined only in the tests, built the way users build theirs (imported by recipes by name)."""

from __future__ import annotations

import math

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


# --- more user-style text-conditioned generators -------------------------------------------------------------


class DCGANGenerator(nn.Module):
    """DCGAN style: Linear stem on [z, text] -> 4x4 map -> 3x (ConvTranspose2d + BatchNorm2d + ReLU) -> RGB conv."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        chans = [width * 4, width * 2, width, width // 2]
        self.fc = nn.Linear(z_dim + text_dim, chans[0] * 4 * 4)
        layers = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        self.main = nn.Sequential(*layers)
        self.to_rgb = nn.Conv2d(chans[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat([z, text], dim=1))
        x = x.view(x.size(0), -1, 4, 4)
        x = self.main(x)
        return torch.tanh(self.to_rgb(x))


class ResnetBlock(nn.Module):
    """pix2pix / CycleGAN residual block (reflection padding, InstanceNorm)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class FiLMResBlock(nn.Module):
    """Upsample + conv, FiLM from the condition (one Linear, chunked), then a ResnetBlock."""

    def __init__(self, cond_dim: int, c_in: int, c_out: int):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                                nn.Conv2d(c_in, c_out, 3), nn.InstanceNorm2d(c_out, affine=True))
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.res = ResnetBlock(c_out)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        scale, shift = self.film(cond).chunk(2, dim=1)
        x = F.relu(x * (1 + scale[:, :, None, None]) + shift[:, :, None, None])
        return self.res(x)


class Pix2PixFiLMGenerator(nn.Module):
    """pix2pix / CycleGAN style: projected 4x4 start, upsampling + ResnetBlocks, FiLM conditioning on [z, text]."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        cond_dim = z_dim + text_dim
        self.width = width
        self.project = nn.Linear(cond_dim, width * 2 * 4 * 4)
        self.head = ResnetBlock(width * 2)
        chans = [width * 2, width, width, width // 2]
        self.blocks = nn.ModuleList(FiLMResBlock(cond_dim, a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(chans[-1], 3, 7))

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([z, text], dim=1)
        x = self.project(cond).view(z.shape[0], self.width * 2, 4, 4)
        x = self.head(x)
        for block in self.blocks:
            x = block(x, cond)
        return torch.tanh(self.out(x))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated conv, non-fused: scale input by style, shared-weight conv, multiply by demod coefs."""

    def __init__(self, w_dim: int, c_in: int, c_out: int, kernel_size: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.affine = nn.Linear(w_dim, c_in)
        nn.init.ones_(self.affine.bias)
        self.scale = 1.0 / math.sqrt(c_in * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (N, c_in)
        weight = self.weight * self.scale
        x = x * styles[:, :, None, None]
        x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} (W[o,i,k] * s[n,i])^2 = (s^2) @ (sum_k W^2)^T
            dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8)  # (N, c_out)
            x = x * dcoefs[:, :, None, None]
        return x + self.bias[None, :, None, None]


class StyleLayer(nn.Module):
    def __init__(self, w_dim: int, c_in: int, c_out: int):
        super().__init__()
        self.conv = ModulatedConv2d(w_dim, c_in, c_out, 3)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x, w), 0.2) * math.sqrt(2.0)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 style: mapping MLP, learned constant input, modulated/demodulated convs, skip to-RGB outputs."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        w_dim = width * 2
        self.mapping_z = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim),
                                       nn.LeakyReLU(0.2))
        self.mapping = nn.Sequential(nn.Linear(w_dim + text_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim),
                                     nn.LeakyReLU(0.2))
        chans = {4: width * 2, 8: width * 2, 16: width, 32: width // 2}
        self.const = nn.Parameter(torch.randn(1, chans[4], 4, 4))
        self.conv4 = StyleLayer(w_dim, chans[4], chans[4])
        self.rgb4 = ModulatedConv2d(w_dim, chans[4], 3, 1, demodulate=False)
        self.convs = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        for res in (8, 16, 32):
            self.convs.append(nn.ModuleList([StyleLayer(w_dim, chans[res // 2], chans[res]),
                                             StyleLayer(w_dim, chans[res], chans[res])]))
            self.rgbs.append(ModulatedConv2d(w_dim, chans[res], 3, 1, demodulate=False))

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        w = self.mapping(torch.cat([self.mapping_z(z), text], dim=1))
        x = self.const.expand(z.shape[0], -1, -1, -1)
        x = self.conv4(x, w)
        rgb = self.rgb4(x, w)
        for (conv_a, conv_b), to_rgb in zip(self.convs, self.rgbs):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = conv_b(conv_a(x, w), w)
            rgb = F.interpolate(rgb, scale_factor=2.0, mode="bilinear", align_corners=False) + to_rgb(x, w)
        return torch.tanh(rgb)


class SelfAttention(nn.Module):
    """SAGAN self-attention: 1x1 query/key/value convs, softmax attention map, gamma-scaled residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, max(channels // 8, 1), 1)
        self.key = nn.Conv2d(channels, max(channels // 8, 1), 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.tensor(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        q = self.query(x).view(n, -1, h * w).permute(0, 2, 1)  # (N, HW, C')
        k = self.key(x).view(n, -1, h * w)  # (N, C', HW)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (N, HW, HW)
        v = self.value(x).view(n, -1, h * w)  # (N, C, HW)
        out = torch.bmm(v, attn.permute(0, 2, 1)).view(n, c, h, w)
        return self.gamma * out + x


class SAGANGenerator(nn.Module):
    """SAGAN style: Linear stem on [z, text], upsample+conv+BatchNorm blocks, self-attention at 16x16."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        self.c0 = width * 4
        self.linear = nn.Linear(z_dim + text_dim, self.c0 * 4 * 4)

        def up_block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv2d(c_in, c_out, 3, padding=1))

        self.block1 = up_block(width * 4, width * 2)
        self.block2 = up_block(width * 2, width)
        self.attn = SelfAttention(width)
        self.block3 = up_block(width, width // 2)
        self.final = nn.Sequential(nn.BatchNorm2d(width // 2), nn.ReLU(), nn.Conv2d(width // 2, 3, 3, padding=1))

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.linear(torch.cat([z, text], dim=1)).view(z.size(0), -1, 4, 4)
        x = self.block2(self.block1(x))
        x = self.attn(x)
        x = self.block3(x)
        return torch.tanh(self.final(x))


class PixelShuffleGenerator(nn.Module):
    """ESPCN / ESRGAN style: Linear stem on [z, text], Conv2d(C, 4C) + PixelShuffle(2) upsampling, RGB conv."""

    def __init__(self, z_dim: int = 16, text_dim: int = 384, width: int = 32):
        super().__init__()
        self.width = width
        self.stem = nn.Linear(z_dim + text_dim, width * 4 * 4)
        self.conv_first = nn.Conv2d(width, width, 3, padding=1)
        self.upsampler = nn.Sequential(*[
            m for _ in range(3)
            for m in (nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, inplace=True))])
        self.conv_hr = nn.Conv2d(width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([z, text], dim=1)).view(z.shape[0], self.width, 4, 4)
        x = self.lrelu(self.conv_first(x))
        x = self.upsampler(x)
        x = self.conv_last(self.lrelu(self.conv_hr(x)))
        return torch.tanh(x)


def dcgan(**kwargs) -> nn.Module:
    return DCGANGenerator(**kwargs)


def pix2pix_film(**kwargs) -> nn.Module:
    return Pix2PixFiLMGenerator(**kwargs)


def stylegan2(**kwargs) -> nn.Module:
    return StyleGAN2Generator(**kwargs)


def sagan(**kwargs) -> nn.Module:
    return SAGANGenerator(**kwargs)


def pixelshuffle(**kwargs) -> nn.Module:
    return PixelShuffleGenerator(**kwargs)
