"""The students ``distill`` trains: the config of a slim one, building it, and starting it from its teacher.

``slim_config`` scales a DF-GAN teacher's widths (and, of a token-conditioned teacher, keeps some of its
attention and token layers); ``make_student`` builds what a ``StudentConfig`` (``distill``'s ``student`` group)
names; ``inherit_from_teacher`` copies a DF-GAN teacher's weights into a slim student (see ``distill``'s
docstring for what is kept); ``discriminator_for`` gives the adversarial term its discriminator.
"""

from __future__ import annotations

import torch
from torch import nn

from ..artifact import Artifact
from ..errors import PassFailed
from ..models import DFDiscriminator, DFGenerator
from ..models.contract import Generator, is_user_model
from ..models.dfgan import GeneratorConfig
from ..models.io import load_discriminator, load_model
from ..models.user import build
from ..train.losses import Taps
from .distill_config import StudentConfig


def slim_config(teacher: GeneratorConfig, width: float | list[float], convs_per_block: int | None = None,
                separable: bool = False, attention: list[int] | None = None,
                token_layers: int | None = None) -> GeneratorConfig:
    """The teacher's architecture with its widths times ``width`` (one factor, or one per entry of
    ``teacher.channels``: the stem's, then each block's output; a block's first conv takes its output's), and
    of a token-conditioned teacher, the cross-attention resolutions in ``attention`` and its first
    ``token_layers`` token-transformer layers (None: all of either)."""
    stages = len(teacher.channels)
    factors = list(width) if isinstance(width, list) else [width] * stages
    if len(factors) != stages:
        raise PassFailed(f"distill: width has {len(factors)} factors but the generator has {stages} stages (the stem "
                         f"and {stages - 1} blocks); give {stages} factors or one number")
    if (attention is not None or token_layers is not None) and not teacher.attention:
        raise PassFailed("distill: attention and token_layers apply to a teacher that reads caption tokens; this "
                         "one reads the pooled caption vector only: remove them")
    if attention is not None and (not attention or not set(attention) <= set(teacher.attention)):
        raise PassFailed(f"distill: attention must be a non-empty subset of the teacher's cross-attention "
                         f"resolutions {teacher.attention} (the student reads the same caption tokens), got {attention}")
    if token_layers is not None and token_layers > teacher.token_layers:
        raise PassFailed(f"distill: token_layers {token_layers} is more than the teacher's {teacher.token_layers}; "
                         f"keep at most {teacher.token_layers}")
    scale = lambda widths, fs: [max(1, round(w * f)) for w, f in zip(widths, fs)]  # noqa: E731
    tokens = {"attention": sorted(attention)} if attention is not None else {}
    tokens |= {"token_layers": token_layers} if token_layers is not None else {}
    return GeneratorConfig(**{**teacher.model_dump(), "channels": scale(teacher.channels, factors),
                              "hidden": scale(teacher.hidden, factors[1:]), "separable": separable,
                              "convs_per_block": convs_per_block or teacher.convs_per_block, **tokens})


def make_student(spec: StudentConfig, src: Artifact, teacher: Generator) -> Generator:
    """The student ``spec`` asks for (see the module docstring), untrained unless its kind is ``input``."""
    if spec.kind == "input":
        return load_model(src.path)
    if spec.kind == "factory":
        if not is_user_model(teacher):
            raise PassFailed("distill: student kind factory needs a user generator (input.factory); this teacher is "
                             "a compresskit model: use student: {kind: slim}")

        factory = teacher.config.spec
        student = build(factory.model_copy(update={"kwargs": {**factory.kwargs, **spec.kwargs}}))
        student.meta = dict(teacher.meta)
        return student.train()
    if isinstance(getattr(teacher, "config", None), GeneratorConfig):
        config = slim_config(teacher.config, spec.width, spec.convs_per_block, spec.separable, spec.attention,
                             spec.token_layers)
    else:  # a user generator: DF-GAN's default widths, scaled, on the teacher's io spec
        if spec.attention is not None or spec.token_layers is not None:
            raise PassFailed("distill: attention and token_layers apply to a compresskit teacher that reads caption "
                             "tokens; remove them for a user generator")
        c = teacher.config
        base = GeneratorConfig(z_dim=c.z_dim, text_dim=c.text_dim, image_size=c.image_size)
        config = slim_config(base, spec.width, spec.convs_per_block or 1, spec.separable)
    student = DFGenerator(config)
    student.meta = dict(teacher.meta)
    return student


def discriminator_for(step: str, init: str, teacher_folder, teacher_config: GeneratorConfig) -> nn.Module:
    """The adversarial term's discriminator, in train mode: the teacher's own (``init == "teacher"``; one line naming
    the fix when it ships none) or a new one sized for the teacher's images and caption vectors."""

    if init == "teacher":
        disc = load_discriminator(teacher_folder)
        if disc is None:
            raise PassFailed(f"{step}: losses.adversarial_init: teacher, but the teacher ships no discriminator "
                             "(discriminator.safetensors); fit one with compresskit refit-disc, or set "
                             "losses.adversarial_init: fresh")
        return disc.train()
    return DFDiscriminator(teacher_config.image_size, 32, teacher_config.text_dim).train()


def _top_channels(features: torch.Tensor, k: int, by_importance: bool = False) -> torch.Tensor:
    """The ``k`` channels of a (N, C, ...) activation with the largest mean magnitude, in channel order (or, with
    ``by_importance``, the most active first: a supernet's first channels are then its best ones)."""
    magnitude = features.float().abs().transpose(0, 1).reshape(features.shape[1], -1).mean(1)
    top = magnitude.topk(k).indices  # sorted by magnitude, largest first
    return (top if by_importance else top.sort().values).cpu()  # indices on the CPU index tensors on any device


@torch.no_grad()
def inherit_from_teacher(student: DFGenerator, teacher: DFGenerator, example: tuple,
                         by_importance: bool = False) -> dict[str, torch.Tensor]:
    """Start a slim ``student`` from its DF-GAN ``teacher``'s weights (see the module docstring); with
    ``by_importance`` every stage's kept channels are ordered most active first (an elastic supernet's order).

    Returns the kept teacher channels of each block output (``blocks.i``), for the feature adapters."""
    if not isinstance(teacher, DFGenerator):
        raise PassFailed("distill: init: teacher needs a DF-GAN teacher (the project's generator); use init: random")
    taps = Taps(teacher, ["stem", *[f"blocks.{i}" for i in range(len(teacher.blocks))],
                           *[f"blocks.{i}.conv0" for i in range(len(teacher.blocks))]])
    teacher(*example)
    taps.remove()
    stem = taps.out["stem"].view(len(example[0]), -1, 16)
    top = lambda features, k: _top_channels(features, k, by_importance)  # noqa: E731
    keep = [top(stem, student.stem.out_features // 16)]  # each block's input, then its output
    keep += [top(taps.out[f"blocks.{i}"], b.out_channels) for i, b in enumerate(student.blocks)]
    student.text_mlp.load_state_dict(teacher.text_mlp.state_dict())
    rows = (keep[0][:, None] * 16 + torch.arange(16)).reshape(-1)  # the stem's rows of the kept 4x4 maps
    student.stem.weight.copy_(teacher.stem.weight[rows])
    student.stem.bias.copy_(teacher.stem.bias[rows])

    def fusion(s_fuse: nn.Module, t_fuse: nn.Module, kept: torch.Tensor) -> None:
        for name, s_lin in s_fuse.named_modules():
            if isinstance(s_lin, nn.Linear):
                t_lin = t_fuse.get_submodule(name)
                out = kept if name.endswith(".2") else slice(None)  # the hidden layer is copied whole
                s_lin.weight.copy_(t_lin.weight[out])
                s_lin.bias.copy_(t_lin.bias[out])

    def conv(s_conv: nn.Module, t_conv: nn.Module, out: torch.Tensor, into: torch.Tensor) -> None:
        if not isinstance(s_conv, nn.Conv2d) or not isinstance(t_conv, nn.Conv2d):
            raise PassFailed("distill: init: teacher needs full 3x3 convs in student and teacher; set separable: "
                             "false or init: random")
        s_conv.weight.copy_(t_conv.weight[out][:, into])
        s_conv.bias.copy_(t_conv.bias[out])

    for i, (s_block, t_block) in enumerate(zip(student.blocks, teacher.blocks)):
        into, out = keep[i], keep[i + 1]
        hidden = top(taps.out[f"blocks.{i}.conv0"], s_block.hidden_channels)
        fusion(s_block.fuse0, t_block.fuse0, into)
        conv(s_block.shortcut, t_block.shortcut, out, into)
        conv(s_block.conv0, t_block.conv0, hidden, into)
        if hasattr(s_block, "conv1"):
            fusion(s_block.fuse1, t_block.fuse1, hidden)
            conv(s_block.conv1, t_block.conv1, out, hidden)
        # one conv per block: the teacher's first conv, its outputs read as the block's (a start, not a copy)
    conv(student.to_rgb, teacher.to_rgb, slice(None), keep[-1])
    # token conditioning (widths not scaled): the token path whole, or its first layers; each kept cross-attention
    # reads and writes the kept channels of the block output it follows
    if hasattr(student, "token_norm"):
        student.token_norm.load_state_dict(teacher.token_norm.state_dict())
    if hasattr(student, "token_mix"):
        student.token_in.load_state_dict(teacher.token_in.state_dict())
        for s_layer, t_layer in zip(student.token_mix, teacher.token_mix):
            s_layer.load_state_dict(t_layer.state_dict())
    for i, s_attend in getattr(student, "attend", {}).items():
        t_attend, kept = teacher.attend[i], keep[int(i) + 1]
        for name in ("key", "value"):
            s_proj, t_proj = getattr(s_attend, name), getattr(t_attend, name)
            if hasattr(teacher, "token_mix") and not hasattr(student, "token_mix"):
                # no token transformer in the student: its keys and values read the normed token states directly,
                # so they start as the teacher's composed with its token input projection (exact were the
                # transformer's layers the identity)
                w_in, b_in = teacher.token_in.weight[:, :, 0], teacher.token_in.bias
                s_proj.weight.copy_((t_proj.weight[:, :, 0] @ w_in)[:, :, None])
                s_proj.bias.copy_(t_proj.weight[:, :, 0] @ b_in + t_proj.bias)
            else:
                s_proj.load_state_dict(t_proj.state_dict())
        s_attend.position.copy_(t_attend.position)
        if s_attend.scale is not None:
            s_attend.scale.copy_(t_attend.scale)
        if hasattr(s_attend, "query"):
            conv(s_attend.query, t_attend.query, slice(None), kept)
        conv(s_attend.out, t_attend.out, kept, slice(None))
    return {f"blocks.{i}": kept for i, kept in enumerate(keep[1:])}
