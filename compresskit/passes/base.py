"""The Pass contract: one class per file, one method.

A pass reads one artifact and writes the payload of a new one into ``out_dir`` (a temporary folder the
runner renames into place and checksums); it never edits its input. It declares:

* ``name`` and ``about`` (one line, shown by ``compresskit passes``);
* ``Config``: a strict pydantic model of its options (unknown keys are errors);
* ``accepts`` (input formats) and ``produces`` (output format): members of ``artifact.Format``, checked when
  a recipe is loaded;
* ``needs``: what it asks the context for (``teacher``, ``captions``, ``calibration``): checked when the
  recipe loads, and the context refuses what a pass did not declare;
* ``metrics``: the figures its ``PassResult`` reports (name -> unit, direction, about); they join the bench
  report under the step's name and can be gated (``{metric: int8_mac_share, goal: threshold, value: 0.9}``);
* ``libraries``: distributions whose versions enter the artifact id (a library upgrade re-runs the step);
* ``distributed``: under torchrun, the pass runs on every rank (it shards its own work; rank 0 writes).

The runner, not the pass, carries the input's lineage and dataset identity to the new artifact. Heavy
backends (onnx, openvino, nncf, torch_pruning) are imported inside ``run``. A pass in another package
registers through the ``compresskit.passes`` entry-point group (see ``registry.py``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..artifact import Artifact, Format, load_artifact
from ..errors import PassFailed
from .calibration import calibration_inputs, dataset_captions, unseen_attribute_inputs

if TYPE_CHECKING:  # the context stays torch-free until a pass asks for a model
    from ..models.contract import Generator

NEEDS = {
    "teacher": "the recipe's input generator (an artifact in torch format)",
    "captions": "captions from the train split of the dataset the generator learnt",
    "calibration": "seeded (z, caption vector) input dicts from that dataset, for quantisation",
}


class PassConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class PassMetric:
    """A figure a pass reports about what it made; gateable by name."""

    unit: str
    direction: str  # "higher" or "lower" is better
    about: str


@dataclass
class PassResult:
    """What ``run`` returns: declared ``metrics`` (finite numbers; reported and gateable) and free ``details``."""

    metrics: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def checked(self, cls: type[Pass]) -> PassResult:
        """The result, checked against what the pass declared (a broken plugin fails here, by name)."""
        declared, reported = set(cls.metrics), set(self.metrics)
        if reported - declared:
            raise PassFailed(f"{cls.name}: reported undeclared metric(s) {sorted(reported - declared)}; add them to "
                             f"{cls.__name__}.metrics")
        for name in sorted(declared):
            value = self.metrics.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PassFailed(f"{cls.name}: declared metric {name!r} is missing or not a finite number ({value!r})")
        return self


@dataclass
class PassContext:
    """A pass's one door to the rest of the package: the teacher (``teacher_model``), captions and calibration
    inputs of the artifact's own dataset, the caption inputs a generator reads (``caption_inputs``: the full
    MiniLM's, or a shallow text encoder's: ``shallow_text_encoder``), seed, threads, log, progress, and a scratch
    folder for checkpoints. A pass imports no other pass: what passes share comes through here, or from the
    helpers in ``compresskit.text`` and ``compresskit.runtimes``."""

    run_dir: Path
    seed: int = 0
    threads: int | None = None
    teacher: Artifact | None = None
    log: Callable[[str], None] = lambda message: None
    progress: Callable[[int, int, dict], None] = lambda done, total, stats: None
    scratch: Path | None = None  # per-step folder that survives a crash (checkpoints); removed on success
    source: Artifact | None = None  # the step's input (set by the runner): its dataset is the one offered
    needs: tuple[str, ...] = ()  # what the running pass declared (set by the runner)

    def _require(self, need: str) -> None:
        if need not in self.needs:
            raise PassFailed(f"a pass asked the context for {need} without declaring it; add {need!r} to its needs")
        if self.source is None or (need == "teacher" and self.teacher is None):
            raise PassFailed(f"the context has no {'teacher' if self.source else 'source'} artifact; run the pass "
                             "through the runner")

    def teacher_model(self) -> Generator:
        """The teacher (the recipe's input generator), loaded afresh: in eval mode, its parameters frozen."""
        self._require("teacher")
        from ..models.io import load_model  # imports torch: the context stays torch-free until a pass asks

        return load_model(self.teacher.path).eval().requires_grad_(False)

    def captions(self, n: int, seed: int | None = None, split: Literal["train", "val"] = "train") -> list[str]:
        """``n`` captions (repeating if the split is smaller) of the dataset the generator learnt: train to
        fit, val to choose (early stopping, accuracy control); eval is never offered to a pass."""
        self._require("captions")
        return dataset_captions(self.source.dataset, n, self.seed if seed is None else seed, split)

    def calibration(self, n: int, seed: int | None = None,
                    split: Literal["train", "val"] = "train") -> list[dict[str, np.ndarray]]:
        """``n`` single-image input dicts {z, text[, tokens, token_mask]} for the source's io spec and dataset."""
        self._require("calibration")
        return calibration_inputs(self.source, n, self.seed if seed is None else seed, split)

    def unseen_attribute_inputs(self, n: int, seed: int | None = None,
                                split: Literal["val"] = "val") -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """(``n`` single-image input dicts, their objects' labels) of a shapes dataset's ``split`` images whose
        (colour, shape) pairing train never drew: what the unseen-pairing figures score."""
        self._require("calibration")
        return unseen_attribute_inputs(self.source, n, self.seed if seed is None else seed, split)

    def caption_inputs(self, captions: Sequence[str], io: dict, encoder: Path | None = None) -> dict[str, np.ndarray]:
        """The caption inputs (``text``[, ``tokens``, ``token_mask``], numpy) a generator with io spec ``io`` reads
        for ``captions``: the full MiniLM's, or, with ``encoder`` (an exported text encoder, e.g.
        ``shallow_text_encoder``'s), what a bundle built on that encoder feeds its generator."""
        if encoder is None:
            from ..models.inputs import text_inputs  # imports torch, as above
            from ..text import TextEncoder  # loads MiniLM (torch, transformers) only when asked

            return text_inputs(io, captions, TextEncoder())
        from ..runtimes.text_encoder import encoder_onnx_inputs  # a runtime: only when a pass reads an exported encoder

        return encoder_onnx_inputs(encoder, io, captions)

    def shallow_text_encoder(self, layers: int, steps: int, lr: float, step: str) -> Path:
        """MiniLM's first ``layers`` layers distilled ``steps`` steps at ``lr`` on the source dataset's train
        captions (and its token states where the source generator reads them), exported as MiniLM is; cached by
        ``text.shallow``, so the distill step whose student reads it and the bundle step that ships it share one.
        ``step``: the asking pass, for the log."""
        self._require("captions")
        from ..text.shallow import shallow_encoder_onnx  # imports torch and transformers: only when asked

        captions = sorted(set(self.captions(100_000, seed=self.seed)))
        tokens = "tokens" in self.source.io["inputs"]  # the generator reads token states: distil those too
        self.log(f"{step}: MiniLM's first {layers} layers distilled on {len(captions)} train captions, {steps} steps "
                 f"(sentence vector{' and token states' if tokens else ''}; cached)")
        return shallow_encoder_onnx(captions, layers=layers, steps=steps, lr=lr, seed=self.seed, tokens=tokens,
                                    progress=self.progress)

    def ancestor(self, artifact: Artifact) -> Artifact | None:
        """The artifact ``artifact`` was made from (its ``parent_id``), where this run folder holds it (checksums
        verified); None when it is not here (an artifact given alone)."""
        if artifact.parent_id is None:
            return None
        found = sorted((Path(self.run_dir) / "artifacts").glob(f"*-{artifact.parent_id}"))
        return load_artifact(found[0]) if found else None

    def for_step(self, source: Artifact, needs: tuple[str, ...], scratch: Path | None = None) -> PassContext:
        return replace(self, source=source, needs=tuple(needs), scratch=scratch)


class Pass(ABC):
    name: ClassVar[str]
    about: ClassVar[str]
    Config: ClassVar[type[PassConfig]] = PassConfig
    accepts: ClassVar[tuple[Format, ...]]
    produces: ClassVar[Format]
    needs: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[dict[str, PassMetric]] = {}
    libraries: ClassVar[tuple[str, ...]] = ("torch",)
    version: ClassVar[str] = "1"  # bump when the pass's output changes for the same config
    distributed: ClassVar[bool] = False  # under torchrun: runs on every rank (else on rank 0 alone)

    def __init__(self, config: PassConfig | None = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def machine_key(cls, config: PassConfig) -> dict:
        """What of this machine changes the pass's output for ``config`` (e.g. the training precision that
        ``bf16: auto`` resolves to): it enters the artifact id, so a cache shared by two kinds of CPU keeps both."""
        return {}

    @classmethod
    def reads_teacher_discriminator(cls, config: PassConfig) -> bool:
        """True when ``config`` makes the pass start from the teacher's discriminator (its hash joins the id)."""
        return False

    @abstractmethod
    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        """Write the new artifact's payload into ``out_dir``; return its figures."""


def contract_problems(cls: type) -> list[str]:
    """What is wrong with a pass class (empty when it honours the contract): checked on registration."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        return [f"{cls!r} is not a subclass of compresskit.passes.base.Pass"]
    problems = []
    for attr in ("name", "about", "accepts", "produces"):
        if not getattr(cls, attr, None):
            problems.append(f"declares no {attr}")
    formats = set(Format)
    for fmt in [*getattr(cls, "accepts", ()), getattr(cls, "produces", None)]:
        if fmt is not None and fmt not in formats:
            problems.append(f"format {fmt!r} is not one of {', '.join(Format)}")
    unknown = [n for n in cls.needs if n not in NEEDS]
    if unknown:
        problems.append(f"needs {unknown[0]!r}, not one of {', '.join(NEEDS)}")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, PassConfig)):
        problems.append("Config is not a PassConfig")
    bad = [n for n, m in cls.metrics.items() if not isinstance(m, PassMetric) or m.direction not in ("higher", "lower")]
    if bad:
        problems.append(f"metric {bad[0]!r} is not a PassMetric with direction 'higher' or 'lower'")
    return problems
