"""DF-GAN-style text-conditioned generator and discriminator (Tao et al., CVPR 2022), sized for 32 px.

Generator: ``cond = [z, MLP(LayerNorm(text))]`` -> linear stem -> (upsample x2, fusion, 3x3 conv, fusion,
3x3 conv) blocks with a 1x1 shortcut -> LeakyReLU -> 3x3 conv -> RGB. Every fusion block predicts a
per-channel scale and shift from ``cond``. No normalisation layers in the image path and no transposed
convolutions: cheap on CPUs and friendly to INT8.

Three departures from DF-GAN, each measured on a 400-600 step regression probe before the teachers were
trained: the caption feeds the stem too (so "at the top left" can place content, which channel gains
alone learn slowly); the caption MLP starts with LayerNorm (a unit 384-d MiniLM vector is ~30x weaker
than z otherwise); and the RGB head is linear while training and clamped to [-1, 1] in eval mode, as in
StyleGAN2, instead of tanh: on white-background data tanh saturates at +1 within ~50 steps and the
gradient that would draw an object there vanishes (shapes regression loss stayed at the blank-canvas
value until this change).

Every width lives in ``GeneratorConfig`` (``channels``, ``hidden``), and ``forward`` reads shapes from
the layers, so a pruned generator is rebuilt from its config alone.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn
from torch.nn import functional as F


class GeneratorConfig(BaseModel):
    """Architecture of a DF-GAN generator. ``channels``/``hidden`` default from ``ngf``."""

    model_config = ConfigDict(extra="forbid")

    arch: str = "dfgan"
    image_size: int = 32
    z_dim: int = 100
    text_dim: int = 384
    text_hidden: int = 256  # width of the caption MLP
    fuse_hidden: int = 128  # hidden width of each scale/shift predictor
    ngf: int = 64
    channels: list[int] | None = None  # stem, then each block's output
    hidden: list[int] | None = None  # each block's first-conv output (unused when convs_per_block is 1)
    convs_per_block: Literal[1, 2] = 2  # depth: 1 = one fusion + 3x3 conv per block (slim students)
    separable: bool = False  # 3x3 convs as depthwise 3x3 + pointwise 1x1 (slim students)
    # token-level conditioning: cross-attention from the image to the caption's MiniLM token states after
    # each block whose output has one of these resolutions (empty: pooled caption vector only)
    attention: list[int] = []
    attn_dim: int = 64  # query/key/value width of each attention layer
    attn_heads: int = 4
    # what an image position asks the caption: "content" = its features plus a learned position embedding;
    # "position" = the learned embedding of where it is alone ("what does the caption put here?")
    attn_query: Literal["content", "position"] = "content"
    # cosine attention (queries and keys L2-normalised per head, a learned per-head scale starting at 10):
    # lets attention be sharp from the first step instead of uniform until the key norms grow
    qk_norm: bool = False
    # a small transformer over the token states before the image reads them (0: MiniLM's states as they are):
    # lets each word learn what its clause says ("green" learns it sits "at the bottom right")
    token_layers: int = 0
    token_width: int = 128  # width of those layers
    token_length: int = 24  # tokens are zero-padded (or cut) to this length: a static shape for export

    @model_validator(mode="after")
    def _fill_widths(self) -> GeneratorConfig:
        n_blocks = int(math.log2(self.image_size)) - 2  # 4x4 stem doubles up to image_size
        if 2 ** (n_blocks + 2) != self.image_size or n_blocks < 1:
            raise ValueError(f"image_size must be a power of two >= 8, got {self.image_size}")
        if self.channels is None:
            self.channels = [self.ngf * min(2 ** (n_blocks - i), 8) for i in range(n_blocks + 1)]
        if self.hidden is None:
            self.hidden = list(self.channels[1:])
        if len(self.channels) != n_blocks + 1 or len(self.hidden) != n_blocks:
            raise ValueError(f"{self.image_size}px needs {n_blocks + 1} channels and {n_blocks} hidden widths")
        if min(self.channels + self.hidden) < 1:
            raise ValueError("every width must be >= 1")
        resolutions = [8 * 2**i for i in range(n_blocks)]
        if any(r not in resolutions for r in self.attention):
            raise ValueError(f"attention resolutions must be block outputs of a {self.image_size}px generator: "
                             f"{resolutions}, got {self.attention}")
        if self.attn_dim % self.attn_heads or self.token_width % self.attn_heads:
            raise ValueError(f"attn_dim {self.attn_dim} and token_width {self.token_width} must be multiples of "
                             f"attn_heads {self.attn_heads}")
        return self

    @property
    def cond_dim(self) -> int:
        return self.z_dim + self.text_hidden


class Affine(nn.Module):
    """Per-channel scale and shift predicted from the condition (init: identity)."""

    def __init__(self, cond_dim: int, hidden: int, channels: int):
        super().__init__()
        self.gamma = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.beta = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        nn.init.zeros_(self.gamma[2].weight)
        nn.init.ones_(self.gamma[2].bias)
        nn.init.zeros_(self.beta[2].weight)
        nn.init.zeros_(self.beta[2].bias)
        self.precomputed: tuple[torch.Tensor, torch.Tensor] | None = None  # set by models.fused for one call

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.precomputed is not None:  # (gamma, beta), each (N, C, 1, 1), from the merged MLPs
            gamma, beta = self.precomputed
            return gamma * x + beta
        return self.gamma(cond)[:, :, None, None] * x + self.beta(cond)[:, :, None, None]


class Fusion(nn.Module):
    """DF-GAN's deep fusion block: two affine + LeakyReLU stages."""

    def __init__(self, cond_dim: int, hidden: int, channels: int):
        super().__init__()
        self.affine0 = Affine(cond_dim, hidden, channels)
        self.affine1 = Affine(cond_dim, hidden, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.affine0(x, cond), 0.2)
        return F.leaky_relu(self.affine1(x, cond), 0.2)


def conv3x3(in_ch: int, out_ch: int, separable: bool) -> nn.Module:
    """A 3x3 convolution, or (``separable``) a depthwise 3x3 followed by a pointwise 1x1 (MobileNet)."""
    if not separable:
        return nn.Conv2d(in_ch, out_ch, 3, padding=1)
    return nn.Sequential(nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch), nn.Conv2d(in_ch, out_ch, 1))


def out_channels(conv: nn.Module) -> int:
    return conv[-1].out_channels if isinstance(conv, nn.Sequential) else conv.out_channels


class GBlock(nn.Module):
    """Upsample x2, then (fusion, 3x3 conv) once or twice, plus a 1x1 shortcut."""

    def __init__(self, cond_dim: int, fuse_hidden: int, in_ch: int, hidden: int, out_ch: int,
                 convs: int = 2, separable: bool = False):
        super().__init__()
        self.fuse0 = Fusion(cond_dim, fuse_hidden, in_ch)
        self.conv0 = conv3x3(in_ch, hidden if convs == 2 else out_ch, separable)
        if convs == 2:
            self.fuse1 = Fusion(cond_dim, fuse_hidden, hidden)
            self.conv1 = conv3x3(hidden, out_ch, separable)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    @property
    def out_channels(self) -> int:
        return self.shortcut.out_channels

    @property
    def hidden_channels(self) -> int:
        return out_channels(self.conv0)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv0(self.fuse0(x, cond))
        if hasattr(self, "conv1"):
            h = self.conv1(self.fuse1(h, cond))
        return self.shortcut(x) + h


def attention_logits(q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``q`` (n, H, Lq, d) against ``k`` (n, H, d, Lk): scaled dot products, or (``scale``) scaled cosines."""
    if scale is None:
        return torch.matmul(q, k) * q.shape[-1] ** -0.5
    # the scale multiplies the queries, not the product: OpenVINO's CPU plugin fuses a per-head multiply after
    # an INT8 MatMul as a per-channel post-op and refuses it (scale size != output channels)
    return torch.matmul(F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-2))


class CrossAttention(nn.Module):
    """Image positions attend over the caption's token states (multi-head, residual, output zero-initialised).

    A learned per-position embedding joins the queries, so a position can ask for the words that name it
    ("... at the top left"); the token states carry MiniLM's own word order, so a second layer can follow
    from a clause's position words to that clause's colour and shape. Padding is masked with a large
    negative bias, not -inf (finite through INT8 and bf16). Plain matmuls and softmax: ONNX opset 17,
    OpenVINO and NNCF take it as it is. Keys and values are 1x1 ``Conv1d`` over the token axis rather than
    ``Linear`` on (N, L, 384): a 3-D Linear output makes Torch-Pruning drop its index mapping for every
    reshape in the model, and the stem's 1-D -> 4x4 view would then be pruned inconsistently.
    """

    def __init__(self, channels: int, token_dim: int, dim: int, heads: int, size: int, query: str = "content",
                 qk_norm: bool = False):
        super().__init__()
        self.heads = heads
        self.scale = nn.Parameter(torch.full((1, heads, 1, 1), 10.0)) if qk_norm else None
        if query == "content":
            self.query = nn.Conv2d(channels, dim, 1)
        self.key = nn.Conv1d(token_dim, dim, 1)
        self.value = nn.Conv1d(token_dim, dim, 1)
        # alone, the position embedding is the whole query: unit scale, so attention is not uniform at the start
        self.position = nn.Parameter(torch.randn(1, dim, size, size) * (0.02 if query == "content" else 1.0))
        self.out = nn.Conv2d(dim, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``tokens``: (N, 384, L), channels first; ``bias``: (N, 1, 1, L), 0 on tokens, -1e4 on padding."""
        n, _, h, w = x.shape
        dim = self.key.out_channels
        head = dim // self.heads
        q = self.query(x) + self.position if hasattr(self, "query") else self.position.expand(n, -1, -1, -1)
        q = q.reshape(n, self.heads, head, h * w).transpose(2, 3)  # n, H, hw, d
        k = self.key(tokens).reshape(n, self.heads, head, -1)  # n, H, d, L
        v = self.value(tokens).reshape(n, self.heads, head, -1).transpose(2, 3)  # n, H, L, d
        attn = torch.softmax(attention_logits(q, k, self.scale) + bias, dim=-1)
        out = torch.matmul(attn, v).transpose(2, 3).reshape(n, dim, h, w)
        return x + self.out(out)


class TokenMixer(nn.Module):
    """One pre-norm transformer layer over the token states (N, C, L): masked self-attention, then an MLP.

    1x1 ``Conv1d`` projections over channels-first tokens (see ``CrossAttention``), LayerNorm per token.
    """

    def __init__(self, width: int, heads: int, qk_norm: bool = False):
        super().__init__()
        self.heads = heads
        self.scale = nn.Parameter(torch.full((1, heads, 1, 1), 10.0)) if qk_norm else None
        self.norm0 = nn.LayerNorm(width)
        self.qkv = nn.Conv1d(width, 3 * width, 1)
        self.proj = nn.Conv1d(width, width, 1)
        self.norm1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Conv1d(width, 2 * width, 1), nn.GELU(), nn.Conv1d(2 * width, width, 1))

    def _norm(self, norm: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
        return norm(t.transpose(1, 2)).transpose(1, 2)

    def forward(self, t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, width, _ = t.shape
        head = width // self.heads
        q, k, v = self.qkv(self._norm(self.norm0, t)).reshape(n, 3, self.heads, head, -1).unbind(1)  # n, H, d, L
        attn = torch.softmax(attention_logits(q.transpose(2, 3), k, self.scale) + bias, dim=-1)  # n, H, L, L
        t = t + self.proj(torch.matmul(v, attn.transpose(2, 3)).reshape(n, width, -1))
        return t + self.mlp(self._norm(self.norm1, t))


class DFGenerator(nn.Module):
    """``forward(z, text[, tokens, token_mask]) -> image`` in [-1, 1], (N, 3, S, S).

    ``tokens`` (N, L, 384) and ``token_mask`` (N, L; 1 on real tokens, 0 on padding, float) are read when
    the config names ``attention`` resolutions; L is ``token_length``.
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs):
        super().__init__()
        self.config = config or GeneratorConfig(**kwargs)
        c = self.config
        # LayerNorm first: a unit-length 384-d caption vector has components of ~0.05, which next to
        # z ~ N(0, 1) would leave the caption a whisper in the condition
        self.text_mlp = nn.Sequential(
            nn.LayerNorm(c.text_dim),
            nn.Linear(c.text_dim, c.text_hidden), nn.LeakyReLU(0.2), nn.Linear(c.text_hidden, c.text_hidden)
        )
        self.stem = nn.Linear(c.cond_dim, c.channels[0] * 16)
        self.blocks = nn.ModuleList(
            GBlock(c.cond_dim, c.fuse_hidden, c_in, hid, c_out, c.convs_per_block, c.separable)
            for c_in, hid, c_out in zip(c.channels[:-1], c.hidden, c.channels[1:])
        )
        self.to_rgb = nn.Conv2d(c.channels[-1], 3, 3, padding=1)
        if c.attention:
            self.token_norm = nn.LayerNorm(c.text_dim)
            token_dim = c.text_dim
            if c.token_layers:
                self.token_in = nn.Conv1d(c.text_dim, c.token_width, 1)
                self.token_mix = nn.ModuleList(TokenMixer(c.token_width, c.attn_heads, c.qk_norm)
                                               for _ in range(c.token_layers))
                token_dim = c.token_width
            self.attend = nn.ModuleDict({
                str(i): CrossAttention(c.channels[i + 1], token_dim, c.attn_dim, c.attn_heads, 8 * 2**i, c.attn_query,
                                       c.qk_norm)
                for i in range(len(self.blocks)) if 8 * 2**i in c.attention})

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("z", "text", "tokens", "token_mask") if self.config.attention else ("z", "text")

    def forward(self, z: torch.Tensor, text: torch.Tensor, tokens: torch.Tensor | None = None,
                token_mask: torch.Tensor | None = None) -> torch.Tensor:
        cond = torch.cat([z, self.text_mlp(text)], dim=1)
        x = self.stem(cond)  # the caption reaches the 4x4 layout too, not only the channel gains
        x = x.view(x.shape[0], self.stem.out_features // 16, 4, 4)  # channels from the layer, not a constant
        attend = getattr(self, "attend", {})
        if attend:
            if tokens is None or token_mask is None:
                raise ValueError("this generator reads caption tokens: pass tokens and token_mask")
            tokens = self.token_norm(tokens).transpose(1, 2)  # n, 384, L
            bias = ((token_mask - 1.0) * 1e4)[:, None, None, :]  # n, 1, 1, L: padding out of every softmax
            if hasattr(self, "token_mix"):
                tokens = self.token_in(tokens)
                for layer in self.token_mix:
                    tokens = layer(tokens, bias)
        for i, block in enumerate(self.blocks):
            x = block(x, cond)
            if str(i) in attend:
                x = attend[str(i)](x, tokens, bias)
        rgb = self.to_rgb(F.leaky_relu(x, 0.2))
        return rgb if self.training else rgb.clamp(-1.0, 1.0)

    # the model contract (models/contract.py)
    def current_config(self) -> GeneratorConfig:
        """The widths this module has now (after pruning, say), as a config that rebuilds it."""
        return GeneratorConfig(**{**self.config.model_dump(),
                                  "channels": [self.stem.out_features // 16] + [b.out_channels for b in self.blocks],
                                  "hidden": [b.hidden_channels for b in self.blocks]})

    def fixed_width_layers(self) -> list[str]:
        """Layers whose output width the config cannot express per layer: the caption MLP and every fusion MLP's
        hidden layer (one ``text_hidden``, one ``fuse_hidden``) and the RGB head."""
        fused = [f"{name}.0" for name, _ in self.named_modules() if name.endswith((".gamma", ".beta"))]
        # attention: query and key widths meet in a matmul the pruner cannot follow, value's in the heads
        attention = [f"attend.{i}.{part}" for i, layer in getattr(self, "attend", {}).items()
                     for part in ("query", "key", "value") if hasattr(layer, part)]
        tokens = ["token_in", "token_mix"] if hasattr(self, "token_mix") else []  # the token transformer: whole
        return ["to_rgb", "text_mlp", *fused, *attention, *tokens]


class DBlock(nn.Module):
    """Downsampling residual block; the residual branch starts switched off (gamma = 0)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv0(x), 0.2)
        h = F.leaky_relu(self.conv1(h), 0.2)
        return F.avg_pool2d(self.shortcut(x), 2) + self.gamma * h


class DFDiscriminator(nn.Module):
    """Image features (down to 4x4) judged jointly with the caption vector ("one-way output")."""

    def __init__(self, image_size: int = 32, ndf: int = 64, text_dim: int = 384):
        super().__init__()
        self.config = {"image_size": image_size, "ndf": ndf, "text_dim": text_dim}  # rebuilds it (models/io.py)
        n_blocks = int(math.log2(image_size)) - 2
        widths = [ndf * min(2**i, 8) for i in range(n_blocks + 1)]
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.blocks = nn.Sequential(*(DBlock(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.judge = nn.Sequential(
            nn.Conv2d(widths[-1] + text_dim, ndf * 2, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, 1, 4),
        )

    def features(self, image: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(image))

    def judge_pair(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        text_map = text[:, :, None, None].expand(-1, -1, features.shape[2], features.shape[3])
        return self.judge(torch.cat([features, text_map], dim=1)).flatten()
