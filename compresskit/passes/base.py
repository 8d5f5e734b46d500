"""The Pass contract: one class per file, one method.

A pass reads one artifact and writes the payload of a new one into ``out_dir`` (a temporary folder the
runner renames into place and checksums); it never edits its input. It declares:

* ``name`` and ``about`` (one line, shown by ``compresskit passes``);
* ``Config``: a strict pydantic model of its options (unknown keys are errors);
* ``accepts`` (input formats) and ``produces`` (output format), checked when a recipe is loaded;
* ``needs``: what the context must provide (``"teacher"``, ``"captions"``) — validated up front;
* ``libraries``: distributions whose versions enter the artifact id (a library upgrade re-runs the step);
* ``distributed``: under torchrun, the pass runs on every rank (it shards its own work; rank 0 writes).

Heavy backends (onnx, openvino, nncf, torch_pruning) are imported inside ``run``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from ..artifact import Artifact


class PassConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass
class PassContext:
    """What a pass may use besides its input: the recipe's teacher, seed, threads, captions, a logger."""

    run_dir: Path
    seed: int = 0
    threads: int | None = None
    teacher: Artifact | None = None
    captions: list[str] = field(default_factory=list)
    log: Callable[[str], None] = lambda message: None
    progress: Callable[[int, int, dict], None] = lambda done, total, stats: None
    scratch: Path | None = None  # per-step folder that survives a crash (checkpoints); removed on success


def generator_meta(src: Artifact) -> dict:
    """The ``generator_*`` entries of an artifact's meta, carried to the artifacts made from it."""
    return {k: v for k, v in src.meta.items() if k.startswith("generator_")}


class Pass(ABC):
    name: ClassVar[str]
    about: ClassVar[str]
    Config: ClassVar[type[PassConfig]] = PassConfig
    accepts: ClassVar[tuple[str, ...]]
    produces: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    libraries: ClassVar[tuple[str, ...]] = ("torch",)
    version: ClassVar[str] = "1"  # bump when the pass's output changes for the same config
    distributed: ClassVar[bool] = False  # under torchrun: runs on every rank (else on rank 0 alone)

    def __init__(self, config: PassConfig | None = None):
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> dict:
        """Write the new artifact's payload into ``out_dir``; return its ``meta`` (figures, notes)."""
