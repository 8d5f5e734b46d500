"""The kit the two training loops share (``train/loop.py`` for the teacher, ``passes/distill.py``).

* ``step_rng(seed, step)``: the random stream of one step, from (seed, step) alone, so a resumed run
  draws exactly what an uninterrupted one would have;
* ``autocast(device, precision)`` and ``training_precision(asked, device_type)``: bfloat16 autocast where the
  hardware computes bf16 natively (``compresskit.hardware`` decides, once, for every training path);
* ``hinge_d_loss`` / ``hinge_g_loss``: the discriminator's and generator's hinge losses;
* ``ema_update``: exponential moving average of weights;
* ``Checkpointer``: modules + optimizers + a meta dict, written atomically (all files or none, checksummed)
  and read back (safetensors + JSON: no pickles);
* ``EarlyStop``: the best validation figure, its step and state, and when to stop;
* DDP wrapping, sharding and rank agreement come from ``World`` (``train/distributed.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from ..cache import atomic_dir
from ..hardware import Precision, autocast, training_precision  # noqa: F401 - the kit's precision side
from ..model_files import write_checksums
from .distributed import World, current, main_first, process_group  # noqa: F401 - the kit's DDP side
from .state import load_train_state, save_train_state


def step_rng(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with its fused kernel where this torch has one for the parameters' device (CPU from torch 2.4): one
    kernel for every tensor instead of a loop of small ops (the edge recipe's student: 1.0 vs 4.3 ms a step on a
    2-core AMD EPYC, of a ~65 ms step); the same update either way."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, ValueError, TypeError):  # an older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=lr, betas=betas)


def hinge_d_loss(real_logits: torch.Tensor, *fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge on the real pairs plus the mean hinge over the kinds of fake (generated, mismatched captions ...)."""
    return F.relu(1 - real_logits).mean() + sum(F.relu(1 + f).mean() for f in fake_logits) / len(fake_logits)


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1.0 - decay)


class Checkpointer:
    """Saves and restores ``modules`` and ``optimizers`` (plus ``meta``) in one folder, atomically."""

    def __init__(self, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]):
        self.modules, self.optimizers = modules, optimizers

    def save(self, folder: Path, meta: dict, extra: Callable[[Path], None] | None = None) -> Path:
        """Write the state (and whatever ``extra(tmp)`` adds) into ``folder``, replacing it whole."""
        with atomic_dir(Path(folder), replace=True) as tmp:
            if extra is not None:
                extra(tmp)
            save_train_state(tmp, modules=self.modules, optimizers=self.optimizers, meta=meta)
            write_checksums(tmp)
        return Path(folder)

    def load(self, folder: Path) -> dict:
        """Restore every module and optimizer in place; returns the saved meta."""
        return load_train_state(Path(folder), modules=self.modules, optimizers=self.optimizers)


class EarlyStop:
    """Tracks a lower-is-better validation figure: the best value, its step and state, checks without gain."""

    def __init__(self, patience: int, best: float = float("inf"), best_step: int = 0):
        self.patience, self.best, self.best_step, self.stale = patience, best, best_step, 0
        self.best_state: dict | None = None

    def update(self, value: float, step: int, module: torch.nn.Module) -> bool:
        """Record a check; True if it improved (and its state was kept)."""
        if value < self.best:
            self.best, self.best_step, self.stale = value, step, 0
            self.best_state = copy.deepcopy(module.state_dict())
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


__all__ = ["Checkpointer", "EarlyStop", "Precision", "World", "adam", "autocast", "training_precision", "current", "ema_update", "hinge_d_loss", "hinge_g_loss",
           "main_first", "process_group", "step_rng"]
