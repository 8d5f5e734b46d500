"""Recipes: YAML, validated in full before any compute.

    name: smoke                      # optional; defaults to the file name
    input: {model: emoji32-base}     # a shipped model name or a generator checkpoint folder
    seed: 0
    threads: 2
    steps:                           # ordered; each item is {pass name: {its config}}
      - sanitize: {}
      - export_onnx: {opset: 17}

Checked up front: YAML syntax, top-level keys, each step's pass name and every key of its config (with
the nearest valid name), that each step accepts the format the previous one produces, that the input
model exists, that what each step needs can be provided (captions need the input's dataset), and that
every gate names a candidate that exists and a metric it will have. Every problem is a RecipeError: one line naming the step and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .artifact import Format
from .bench.gate import GateSpec
from .bench.names import REFERENCES, measurable_names, step_names
from .bench.schema import METRICS
from .bench.settings import BenchSettings
from .config_errors import read_yaml, validation_message
from .errors import ModelError, RecipeError
from .lookup import unknown_name
from .models import resolve_model_dir
from .models.user import FactorySpec, import_factory
from .passes.base import PassConfig
from .registry import all_passes, pass_class
from .train.config import DataConfig


class InputSpec(BaseModel):
    """Either ``model`` (a shipped name or a compresskit generator folder) or a user factory."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = None
    factory: str | None = None  # "package.module:callable", imported because the recipe names it
    kwargs: dict = {}
    weights: str | None = None  # safetensors state dict of the factory's model
    z_dim: int | None = Field(None, ge=1, le=65_536)
    text_dim: int = Field(384, ge=1, le=65_536)
    image_size: int = Field(32, ge=4, le=4096)
    # the dataset the generator learnt: its train captions calibrate, its eval split scores. A compresskit
    # model says so in its metadata; a factory model must say it here when a step needs captions
    data: DataConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        if (self.model is None) == (self.factory is None):
            raise ValueError("give either model (a shipped name or folder) or factory + weights + z_dim")
        if self.factory is not None and (self.weights is None or self.z_dim is None):
            raise ValueError("a factory input also needs weights (a .safetensors file) and z_dim")
        return self


class RecipeFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = None
    about: str | None = None
    input: InputSpec
    seed: int = Field(0, ge=0, le=2**32 - 1)
    threads: int | None = Field(None, ge=1, le=1024)
    steps: list[dict[str, dict | None]] = Field(min_length=1)
    bench: BenchSettings = BenchSettings()
    gates: list[GateSpec] = []


@dataclass(frozen=True)
class Step:
    index: int
    name: str  # the pass name
    config: PassConfig

    @property
    def label(self) -> str:
        return f"step {self.index + 1} ({self.name})"


@dataclass(frozen=True)
class Recipe:
    name: str
    input: InputSpec
    seed: int
    threads: int | None
    steps: list[Step]
    source: str  # the file it came from
    bench: BenchSettings = field(default_factory=BenchSettings)
    gates: list[GateSpec] = field(default_factory=list)

    def resolved(self) -> dict:
        """Canonical form (defaults filled in), as written into the run folder and hashed."""
        return {"name": self.name, "input": self.input.model_dump(), "seed": self.seed, "threads": self.threads,
                "steps": [{s.name: s.config.model_dump(mode="json")} for s in self.steps],
                "bench": self.bench.model_dump(mode="json"), "gates": [g.model_dump() for g in self.gates]}


def _parse_step(index: int, item: dict, source: str) -> Step:
    where = f"{source}: step {index + 1}"
    if len(item) != 1:
        raise RecipeError(f"{where}: each step is one mapping {{pass name: {{config}}}}, got keys {sorted(item)}")
    [(name, options)] = item.items()
    try:
        cls = pass_class(name)
    except RecipeError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    try:
        config = cls.Config.model_validate(options or {})
    except ValidationError as exc:
        raise RecipeError(validation_message(exc, cls.Config, f"{where} ({name})")) from None
    return Step(index, name, config)


def _check_chain(steps: list[Step], source: str) -> None:
    current = Format.TORCH
    for step in steps:
        cls = pass_class(step.name)
        if current not in cls.accepts:
            producers = ", ".join(sorted({n for n in _producers_of(cls.accepts)})) or "none"
            raise RecipeError(f"{source}: {step.label} takes {'/'.join(cls.accepts)} but receives {current}; "
                              f"put it after a step that produces {'/'.join(cls.accepts)} ({producers})")
        current = cls.produces


def _producers_of(formats: tuple[str, ...]) -> list[str]:

    return [name for name in all_passes() if pass_class(name).produces in formats]


def _check_needs(spec: InputSpec, steps: list[Step], source: str) -> None:
    """A step that needs captions or calibration inputs needs to know the input's dataset."""
    if spec.factory is None or spec.data is not None:
        return  # a compresskit model's metadata names its dataset (the emoji default otherwise, logged)
    for step in steps:
        wanted = [n for n in pass_class(step.name).needs if n in ("captions", "calibration")]
        if wanted:
            raise RecipeError(f"{source}: {step.label} needs {wanted[0]} from the dataset the generator learnt, and a "
                              "factory input does not say which; add input.data: {name: emoji} (or shapes)")


def _check_input(spec: InputSpec, source: str) -> None:

    try:
        if spec.model is not None:
            resolve_model_dir(spec.model)
            return
        FactorySpec(factory=spec.factory, kwargs=spec.kwargs, z_dim=spec.z_dim, text_dim=spec.text_dim,
                    image_size=spec.image_size)
        import_factory(spec.factory)
    except ValidationError as exc:
        raise RecipeError(f"{source}: input.factory: must look like package.module:callable "
                          f"({exc.errors()[0]['msg']})") from None
    except ModelError as exc:
        raise RecipeError(f"{source}: input.{'model' if spec.model else 'factory'}: {exc}") from None
    if not Path(spec.weights).is_file():
        raise RecipeError(f"{source}: input.weights: no file {spec.weights}; give the model's .safetensors")


def _check_candidates(spec: RecipeFile, steps: list[Step], source: str) -> None:
    """Names in ``bench.candidates``, ``bench.speed.bf16`` and gates must be measurable in this recipe."""

    names = step_names([s.name for s in steps])
    checks = [("bench.candidates", c, [*names, "final"]) for c in spec.bench.candidates or []]
    checks += [(f"bench.speed.bf16.{i}", c, [*names, "final", *REFERENCES]) for i, c in enumerate(spec.bench.speed.bf16)]
    for where, chosen in (("speed.e2e", spec.bench.speed.e2e), ("speed.crosscheck", spec.bench.speed.crosscheck),
                          ("speed.probe", spec.bench.speed.probe), ("quality.candidates", spec.bench.quality.candidates)):
        if isinstance(chosen, list):
            checks += [(f"bench.{where}.{i}", c, [*names, "final", "baseline", *REFERENCES]) for i, c in enumerate(chosen)]
    gate_names = measurable_names([s.name for s in steps], spec.bench.speed.bf16)
    checks += [(f"gates.{i}.candidate", g.candidate, gate_names) for i, g in enumerate(spec.gates)]
    for where, name, valid in checks:
        if name not in valid:
            raise RecipeError(f"{source}: {where}: {unknown_name('candidate', name, valid)}")
    _check_pass_metric_gates(spec, steps, names, source)


def _check_pass_metric_gates(spec: RecipeFile, steps: list[Step], names: list[str], source: str) -> None:
    """A gate on a pass's own figure must name a step whose pass reports it."""

    by_name = dict(zip(names, steps))
    for i, gate in enumerate(spec.gates):
        if gate.metric in METRICS:
            continue
        step = steps[-1] if gate.candidate.split("@")[0] == "final" else by_name.get(gate.candidate.split("@")[0])
        declared = pass_class(step.name).metrics if step is not None else {}
        if gate.metric not in declared:
            reporters = [n for n, s in by_name.items() if gate.metric in pass_class(s.name).metrics]
            fix = f"name candidate {reporters[0]!r}" if reporters else "add a step whose pass reports it"
            raise RecipeError(f"{source}: gates.{i}: {gate.candidate} does not report {gate.metric!r} (a figure "
                              f"reported by a pass, not measured by the bench); {fix}")


def parse_recipe(raw: object, source: str = "recipe") -> Recipe:
    if not isinstance(raw, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with input and steps, got {type(raw).__name__}")
    try:
        spec = RecipeFile.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(validation_message(exc, RecipeFile, source)) from None
    steps = [_parse_step(i, item, source) for i, item in enumerate(spec.steps)]
    _check_chain(steps, source)
    _check_input(spec.input, source)
    _check_needs(spec.input, steps, source)
    _check_candidates(spec, steps, source)
    name = spec.name or Path(source).stem
    return Recipe(name, spec.input, spec.seed, spec.threads, steps, source, spec.bench, spec.gates)


def load_recipe(path: str | Path) -> Recipe:
    return parse_recipe(read_yaml(Path(path), "recipe", RecipeError), str(path))
