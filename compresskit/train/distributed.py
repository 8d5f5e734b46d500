"""torch.distributed for training and distillation: process group, global-batch sharding, rank-0 duties.

Launched by ``torchrun`` (or ``compresskit train --nproc-per-node N``), every process reads its rank from
the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). Without
them (a plain ``compresskit train``) everything here is a no-op and training runs in one process.

The contract that makes N processes equal one process:

* ``batch_size`` in a config is the **global** batch. Every rank draws the same global batch (indices and
  noise come from ``(seed, step)`` alone) and keeps its contiguous slice of ``batch_size / world`` rows;
  DDP averages the ranks' gradients, so the update is the one-process update on the same global batch.
* Terms that pair rows of the batch with each other (DF-GAN's mismatched captions) are formed on the
  global batch before sharding.
* Rank 0 alone writes: checkpoints, samples, logs, final models. Every rank resumes from the same
  checkpoint folder, so ``--out`` must be on a filesystem every node sees.
* Collectives time out after ``timeout_s`` (default 600 s): a rank that dies makes the others fail with
  an error instead of waiting forever (torchrun also stops the whole group when one worker exits).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError, DistributedJobFailed

DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes (``local_size`` of them on this node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def device(self) -> torch.device:
        """This process's GPU when there is one (one per local rank), else the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (the global batch must divide evenly)."""
        if not self.active:
            return batch
        per_rank = len(batch) // self.size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def per_rank_batch(self, global_batch: int, what: str = "batch_size") -> int:
        if global_batch % self.size:
            raise ConfigError(
                f"{what} {global_batch} is the global batch and must divide evenly over {self.size} processes; "
                f"use a multiple of {self.size}"
            )
        return global_batch // self.size

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalars over ranks (one collective), so every rank takes the same decisions."""
        if not self.active or not values:
            return values
        packed = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(packed)
        return dict(zip(values, (packed / self.size).tolist()))

    def broadcast(self, value: float) -> float:
        """Rank 0's value on every rank."""
        if not self.active:
            return value
        packed = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(packed, src=0)
        return packed.item()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``module`` (parameters broadcast from rank 0); as-is in one process."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def check_in_sync(self, modules: dict[str, torch.nn.Module], step: int) -> None:
        """Fail unless every rank holds bit-identical parameters (a SHA-256 per rank, one all_gather)."""
        if not self.active:
            return
        digest = hashlib.sha256()
        for name, module in modules.items():
            for key, tensor in module.state_dict().items():
                digest.update(f"{name}.{key}".encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        mine = torch.frombuffer(bytearray(digest.digest()), dtype=torch.uint8).to(self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.size)]
        dist.all_gather(gathered, mine)
        differ = [rank for rank, theirs in enumerate(gathered) if not torch.equal(theirs, gathered[0])]
        if differ:
            raise DistributedJobFailed(
                f"after step {step} ranks {differ} hold different weights from rank 0 (gradient sync is broken); "
                "stop and report this with the training config"
            )

    def threads(self, threads: int | None) -> int | None:
        """A config's ``threads`` is the node's budget: processes on one node share it."""
        if threads is None or self.local_size == 1:
            return threads
        return max(1, threads // self.local_size)


def current() -> World:
    """The running process group's world (size 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                 int(os.environ.get("LOCAL_WORLD_SIZE", 1)), dist.get_backend())


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), readable before the group is joined."""
    return int(os.environ.get("RANK", "0"))


@contextmanager
def process_group(timeout_s: int = DEFAULT_TIMEOUT_S) -> Iterator[World]:
    """Join torchrun's process group for the block (gloo on CPU, nccl when CUDA is there); yield the world.

    Outside torchrun, or inside an already-joined group, nothing is set up or torn down.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    world = current()
    try:
        yield world
    except RuntimeError as exc:  # a collective timed out or lost its peer: one line, not a gloo traceback
        if not (isinstance(exc, dist.DistError) or any(w in str(exc) for w in ("gloo", "NCCL", "Timed out"))):
            raise
        raise DistributedJobFailed(
            f"rank {world.rank} lost contact with the other ranks ({str(exc).splitlines()[0].split('] ')[-1][:160]}); "
            f"another rank died or hung for over {timeout_s} s; a rerun continues from the last checkpoint"
        ) from None
    finally:
        dist.destroy_process_group()


@contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a dataset cache), the other ranks after it (read the cache)."""
    if not world.is_main:
        world.barrier()
    yield
    if world.is_main:
        world.barrier()


def torchrun(nproc_per_node: int, compresskit_args: list[str]) -> None:
    """Run ``compresskit <args>`` as ``nproc_per_node`` processes on this machine under torchrun.

    Each process gets an equal share of the CPU threads (``OMP_NUM_THREADS``, unless already set). A failed
    job (a rank raised or died; torchrun stops the others) raises ``DistributedJobFailed`` after torchrun's
    own report of which rank failed and why.
    """
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
               "-m", "compresskit", *compresskit_args]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    code = subprocess.run(command, env=env, check=False).returncode
    if code:
        raise DistributedJobFailed(
            f"the {nproc_per_node}-process job failed (torchrun exit {code}): the failing rank's message is above; "
            "a rerun continues from the last checkpoint (train: add --resume)"
        )
