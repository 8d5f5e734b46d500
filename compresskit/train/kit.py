"""The kit the two training loops share (``train/loop.py`` for the teacher, ``passes/distill.py``).

* ``step_rng(seed, step)``: the random stream of one step, from (seed, step) alone, so a resumed run
  draws exactly what an uninterrupted one would have;
* ``autocast(device, enabled)``: bfloat16 autocast (fast on CPUs with AMX / AVX512-BF16);
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
from ..models.checksums import write_checksums
from .distributed import World, current, main_first, process_group  # noqa: F401 - the kit's DDP side
from .state import load_train_state, save_train_state


def step_rng(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


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


__all__ = ["Checkpointer", "EarlyStop", "World", "autocast", "current", "ema_update", "hinge_d_loss", "hinge_g_loss",
           "main_first", "process_group", "step_rng"]
