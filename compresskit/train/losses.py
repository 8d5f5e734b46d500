"""The distillation losses (``distill``, ``supernet``), one small callable each, in Torch-Pruning's importance
style: ``loss(student, teacher, batch) -> scalar tensor``, where ``student`` and ``teacher`` are what each model
drew for the batch (``Drawn``: its images and what a loss reads of them) and ``batch`` the teacher's caption
inputs (``text``[, ``tokens``, ``token_mask``]). The pass sums them with the weights of its config.

* ``PixelLoss``: L1 between student and teacher images;
* ``PerceptualLoss``: the distance between their ``Perceiver`` views (EfficientNet-Lite0's pooled features at
  some size, or LPIPS-style: the squared difference of the spatial maps after some Lite0 blocks, each position's
  channel vector at unit length first), on a batch's first rows;
* ``PerceptualDiversityLoss``: ``DiversityLoss`` measured with the perceptual distance, on the same rows (the
  diversity metric compares samples by Lite0 features; pixel spread can hold while that falls);
* ``FeatureLoss``: MSE between named intermediate layers, the student's through learnable 1x1 adapters
  (``feature_adapters``; ``sliced``: a sub-network's narrower maps read the adapter's first input channels),
  computed in closed form from small Gram matrices (``adapted_mse``) rather than by materialising the adapted
  maps at the teacher's widths;
* ``DiversityLoss``: keeps the teacher's variety across noise. Rows 2k and 2k+1 of a batch share a caption (two
  noises); the term is ``max(0, 1 - spread(student) / (target * spread(teacher)))`` with spread the mean
  |image(z1) - image(z2)| of those pairs (``pair_spread``): zero while the student varies at least ``target``
  times as much as the teacher, so it only resists the collapse to a per-caption mean that pixel regression
  under limited capacity drifts to. Only the first ``paired`` rows are pairs;
* ``AdversarialLoss``: hinge loss against a discriminator that learns teacher images (real) from student
  images (fake) for the same caption: each call first takes one discriminator step (``learn``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import PassFailed
from ..hardware import autocast
from .kit import hinge_d_loss, hinge_g_loss

Batch = dict[str, torch.Tensor]  # the teacher's caption inputs of the batch's rows, by input name


@dataclass
class Drawn:
    """What a model drew for a batch: its images, the outputs of its tapped layers, and its ``Perceiver`` view:
    ``perceived`` as given, or computed by ``perceive`` on first use (``view``), so the perceptual forward joins
    the autograd graph where the first perceptual term is taken (the order of the terms is the order of the
    gradient sums: the same student, bit for bit)."""

    images: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    perceived: list[torch.Tensor] | None = None
    perceive: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
    _targets: dict[str, MapTarget] = field(default_factory=dict, repr=False)

    def view(self) -> list[torch.Tensor]:
        if self.perceived is None:
            self.perceived = self.perceive(self.images)
        return self.perceived

    def target(self, layer: str) -> MapTarget:
        """The feature map ``layer`` as a regression target (its rows and sums, computed once: a kept teacher
        batch serves ``teacher_reuse`` steps)."""
        if layer not in self._targets:
            self._targets[layer] = MapTarget.of(self.features[layer])
        return self._targets[layer]


def channel_rows(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N*H*W, C), one row per position: a view of a channels-last map, else a copy."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


@dataclass
class MapTarget:
    """A teacher's feature map as rows ``t`` (positions x channels, fp32) with their sum and sum of squares."""

    rows: torch.Tensor
    total: torch.Tensor
    squares: torch.Tensor

    @classmethod
    def of(cls, maps: torch.Tensor) -> MapTarget:
        with torch.no_grad():
            rows = channel_rows(maps.detach().float())
            return cls(rows, rows.sum(0), rows.pow(2).sum(dtype=torch.float64))


def adapted_mse(maps: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: MapTarget) -> torch.Tensor:
    """``F.mse_loss(F.conv2d(maps, weight, bias), teacher_maps)`` without the adapted maps: with the student's
    rows s_m (M positions x Cs), the adapter A (Ct x Cs), b and the teacher's rows t_m,

        sum_m |A s_m + b - t_m|^2 = <A G, A> + 2 <A, b u^T - K> + M |b|^2 - 2 b . sum_m t_m + sum_m |t_m|^2

    with G = S^T S, u = S^T 1, K = T^T S. The big products (K and, backward, T A) read the teacher's maps once
    each and write only Ct x Cs or M x Cs numbers, where the direct form writes and re-reads M x Ct maps four
    times: the feature term of the edge recipe's step in about half the time (benchmarks/RESULTS.md,
    2026-12-07, night), the same value and gradients to fp32 rounding (tests/train/test_losses.py). In fp32 always:
    the expansion subtracts large sums, which bf16 would not carry."""
    with autocast(maps.device, False):  # a region without autocast, inside one or not
        s = channel_rows(maps.float())
        a, b = weight.float().flatten(1), bias.float()
        m = s.shape[0]
        gram, u, k = s.t() @ s, s.sum(0), target.rows.t() @ s
        cross = (a * (b[:, None] * u[None, :] - k)).sum()
        constant = (target.squares - 2 * (b.double() @ target.total.double())).float()
        total = (a @ gram * a).sum() + 2 * cross + m * b.pow(2).sum() + constant
        return total / (m * a.shape[0])


class Taps:
    """Forward hooks that keep the outputs of named layers (``out``: layer name -> its last output)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.out: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        self._hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: self.out.__setitem__(name, o))
                       for name in names]

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def pair_spread(images: torch.Tensor) -> torch.Tensor:
    """Mean |image(2k) - image(2k+1)|: how far two noises of one caption land apart (rows 2k, 2k+1 share one)."""
    n = len(images) // 2
    return (images[0:2 * n:2] - images[1:2 * n:2]).abs().mean()


def perceived(lite0: nn.Module, images: torch.Tensor, maps: list[int] | None) -> list[torch.Tensor]:
    """What the perceptual terms compare of images in [-1, 1]: Lite0's pooled features, or the spatial maps
    after the blocks ``maps`` with each position's channel vector at unit length."""
    x = (images.clamp(-1, 1) + 1) / 2
    return [lite0(x)] if maps is None else [F.normalize(m.float(), dim=1) for m in lite0.maps(x, maps)]


def perceptual_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over rows of the distance between two ``perceived`` lists: L1 of pooled features, or the squared
    distance of unit channel vectors summed over channels and averaged over positions (LPIPS without its
    learned channel weights), averaged over the maps."""
    return sum((x.float() - y.float()).abs().mean() if x.dim() == 2 else (x.float() - y.float()).pow(2).sum(1).mean()
               for x, y in zip(a, b)) / len(a)


class Perceiver:
    """Lite0's view (``perceived``) of a batch's first ``rows`` rows (None: all) at ``px`` pixels a side, under
    ``autocast`` (the training precision's context)."""

    def __init__(self, px: int, maps: list[int] | None, rows: int | None, device: torch.device,
                 autocast: Callable[[], AbstractContextManager]):
        from ..metrics.features import lite0  # Lite0's weights and OpenVINO: only the perceptual terms need them

        self.lite0, self.maps, self.rows, self.autocast = lite0(px).to(device), maps, rows, autocast

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        with self.autocast():
            return perceived(self.lite0, images[:self.rows], self.maps)


class PixelLoss:
    def __call__(self, student: Drawn, teacher: Drawn, batch: Batch) -> torch.Tensor:
        return (student.images - teacher.images).abs().mean()


class PerceptualLoss:
    def __call__(self, student: Drawn, teacher: Drawn, batch: Batch) -> torch.Tensor:
        return perceptual_distance(student.view(), teacher.view())


class PerceptualDiversityLoss:
    """The diversity shortfall in the perceptual distance, over the first ``paired`` perceived rows."""

    def __init__(self, paired: int):
        self.paired = paired

    def __call__(self, student: Drawn, teacher: Drawn, batch: Batch) -> torch.Tensor:
        spread = self._spread(student.view())
        return torch.relu(1 - spread / self._spread(teacher.view()).clamp_min(1e-8))

    def _spread(self, views: list[torch.Tensor]) -> torch.Tensor:
        return perceptual_distance([f[0:self.paired:2] for f in views], [f[1:self.paired:2] for f in views])


class DiversityLoss:
    """The shortfall of the student's pair spread against ``target`` times the teacher's, first ``paired`` rows."""

    def __init__(self, target: float, paired: int):
        self.target, self.paired = target, paired

    def __call__(self, student: Drawn, teacher: Drawn, batch: Batch) -> torch.Tensor:
        aimed = self.target * pair_spread(teacher.images[:self.paired])
        return torch.relu(1 - pair_spread(student.images[:self.paired]) / aimed.clamp_min(1e-8))


def adapter_key(layer: str) -> str:
    """A layer name as a ``ModuleDict`` key (no dots)."""
    return layer.replace(".", "_")


class FeatureLoss:
    """Mean over ``layers`` of the MSE between each student map, through its 1x1 adapter, and the teacher's."""

    def __init__(self, adapters: nn.ModuleDict, layers: list[str], sliced: bool = False):
        self.adapters, self.layers, self.sliced = adapters, layers, sliced

    def __call__(self, student: Drawn, teacher: Drawn, batch: Batch) -> torch.Tensor:
        total = 0
        for n in self.layers:
            maps, adapter = student.features[n], self.adapters[adapter_key(n)]
            # a sub-network's map (sliced): its channels are the supernet's first ones
            weight = adapter.weight[:, :maps.shape[1]] if self.sliced else adapter.weight
            total = total + adapted_mse(maps, weight, adapter.bias, teacher.target(n))
        return total / len(self.layers)


def feature_widths(model: nn.Module, names: list[str], example: tuple, which: str) -> dict[str, int]:
    """Channels of each named layer's output (a feature map), checked to exist: one line naming the fix."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise PassFailed(f"distill: the {which} has no layer {missing[0]!r} for the feature loss; set "
                         f"losses.feature_layers to layers both models have (e.g. {', '.join(list(modules)[1:5])}) "
                         "or losses.feature: 0")
    probe = copy.deepcopy(model)
    taps = Taps(probe, names)
    with torch.no_grad():
        probe(*example)
    bad = [n for n in names if not (isinstance(taps.out.get(n), torch.Tensor) and taps.out[n].dim() == 4)]
    if bad:
        raise PassFailed(f"distill: {which} layer {bad[0]!r} does not output a feature map (N, C, H, W); "
                         "choose convolutional layers for losses.feature_layers")
    return {n: taps.out[n].shape[1] for n in names}


@torch.no_grad()
def start_as_selection(adapters: nn.ModuleDict, kept: dict[str, torch.Tensor]) -> None:
    """Each adapter of a layer whose channels were inherited from the teacher (``kept``: layer -> the teacher's
    channel of each student channel) starts as that selection: student channel j -> teacher channel kept[j]."""
    for layer, channels in kept.items():
        adapter = adapters[adapter_key(layer)]
        adapter.weight.zero_()
        adapter.bias.zero_()
        adapter.weight[channels, torch.arange(len(channels)), 0, 0] = 1.0


def feature_adapters(student: nn.Module, teacher: nn.Module, layers: list[str], examples: dict[str, tuple],
                     kept: dict[str, torch.Tensor]) -> nn.ModuleDict:
    """A 1x1 conv from each student layer's channels to the teacher's (``examples``: one input tuple per model,
    to measure them), started as the channel selection where the student inherited the teacher's (``kept``)."""
    s_width = feature_widths(student, layers, examples["student"], "student")
    t_width = feature_widths(teacher, layers, examples["teacher"], "teacher")
    adapters = nn.ModuleDict({adapter_key(n): nn.Conv2d(s_width[n], t_width[n], 1) for n in layers})
    start_as_selection(adapters, {n: kept[n] for n in layers if n in kept})
    return adapters


class DiscriminatorLoss(nn.Module):
    """Hinge loss of the distillation discriminator (teacher images real, student images fake), one forward
    (a module, so that it can run under DistributedDataParallel)."""

    def __init__(self, disc: nn.Module):
        super().__init__()
        self.disc = disc

    def forward(self, target: torch.Tensor, fake: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        def judge(images: torch.Tensor) -> torch.Tensor:
            return self.disc.judge_pair(self.disc.features(images), text)

        return hinge_d_loss(judge(target), judge(fake))


class AdversarialLoss:
    """The generator's hinge loss against ``disc``; each call first takes one discriminator step (``learn``).

    ``autocast``: the training precision's context; ``judge``: ``DiscriminatorLoss(disc)``, DDP-wrapped or not."""

    def __init__(self, disc: nn.Module, opt_d: torch.optim.Optimizer,
                 autocast: Callable[[], AbstractContextManager], judge: nn.Module | None = None):
        self.disc, self.opt_d, self.autocast = disc, opt_d, autocast
        self.judge = judge if judge is not None else DiscriminatorLoss(disc)

    def learn(self, student: Drawn, teacher: Drawn, batch: Batch) -> None:
        """One discriminator step: the teacher's images real, the student's (detached) fake."""
        with self.autocast():
            d_loss = self.judge(teacher.images, student.images.detach(), batch["text"]).float()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

    def generator_loss(self, student: Drawn, batch: Batch) -> torch.Tensor:
        with self.autocast():
            return hinge_g_loss(self.disc.judge_pair(self.disc.features(student.images), batch["text"])).float()

    def __call__(self, student: Drawn, teacher: Drawn, batch: Batch) -> torch.Tensor:
        self.learn(student, teacher, batch)
        return self.generator_loss(student, batch)
