"""A search space: a recipe with ranges or choices in place of values, and a ``search:`` section.

    search:                                   # what to optimise (defaults shown)
      objectives:
        - {metric: speedup_vs_teacher_int8}   # direction from the metric (higher is better: maximise)
        - {metric: r_precision}               # quality on the *val* split (the search never sees eval)
      sampler: tpe                            # tpe | nsga2 | random (Optuna's multi-objective samplers)
      trials: 20                              # finished trials the study stops at (all workers together)
      seed: 0
      n: 200                                  # val captions each trial is scored on [the whole split]
    input: {model: emoji32-v3}
    steps:
      - distill:
          student: {width: {range: [0.2, 0.6]}}                       # float range
          schedule: {steps: {range: [2000, 8000], step: 2000}}         # int range (both ends ints)
          losses: {pixel: {range: [0.1, 10], log: true}}              # log scale
      - {choice: [{quantize_nncf: {}}, {quantize_ort: {}}]}            # a whole step chosen
    gates: [...]                                                       # the constraints (infeasible trials kept)

A parameter is a mapping whose keys are ``range`` (with optional ``log`` and ``step``) or ``choice`` alone; its
name is where it sits (``distill.student.width``; ``steps.1`` for a chosen step). The space is validated as
strictly as a recipe before any trial: every range well formed, and the recipe at every range's low end, at its
high end, and with every choice, parsed by :func:`~compresskit.recipe.parse_recipe` (unknown keys with
did-you-mean, pass config bounds, step formats), so a trial never fails on a typo.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..bench.schema import known_metrics
from ..config_errors import read_yaml, validation_message
from ..errors import RecipeError
from ..lookup import unknown_name
from ..recipe import Recipe, parse_recipe

RANGE_KEYS = ("range", "log", "step")
Direction = Literal["maximize", "minimize"]


class Objective(BaseModel):
    """One figure the search optimises: a metric of one candidate (a step name or ``final``) in the trial's report."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    candidate: str = "final"
    direction: Direction | None = None  # [from the metric: higher is better -> maximize]

    @field_validator("metric")
    @classmethod
    def _known(cls, name: str) -> str:
        known = known_metrics()
        if name not in known:
            raise ValueError(unknown_name("metric", name, sorted(known)))
        return name

    @property
    def goal(self) -> Direction:
        if self.direction is not None:
            return self.direction
        return "maximize" if known_metrics()[self.metric].direction == "higher" else "minimize"

    @property
    def label(self) -> str:
        return self.metric if self.candidate == "final" else f"{self.candidate}.{self.metric}"


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    objectives: list[Objective] = Field(default_factory=lambda: [Objective(metric="speedup_vs_teacher_int8"),
                                                                 Objective(metric="r_precision")], min_length=1)
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    trials: int = Field(20, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    n: int | None = Field(None, ge=8, le=1_000_000)  # val captions per trial [the whole split]
    # a cheap proxy's settings undone for the front's recipes (re-run in full, scored on eval), by dotted name as
    # parameters are named: {distill.schedule.steps: 8000}
    full: dict[str, Any] = Field(default_factory=dict)
    # trials to run first, values by parameter name (the recipe shipped today, say): the front is then judged
    # against it under the same proxy
    start: list[dict[str, Any]] = Field(default_factory=list, max_length=100)


@dataclass(frozen=True)
class Param:
    """One searched value: where it sits in the recipe and what it may take."""

    name: str
    path: tuple  # keys and list indices from the recipe's root
    kind: Literal["float", "int", "choice"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for a value (a choice is asked by index: choices may be whole steps)."""
        if self.kind == "choice":
            return self.choices[trial.suggest_categorical(self.name, list(range(len(self.choices))))]
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def stored(self, value: Any, where: str) -> Any:
        """What Optuna stores for a recipe value (a choice's index); RecipeError if the value is not in the space."""
        if self.kind == "choice":
            if value not in self.choices:
                raise RecipeError(f"{where}: {self.name} = {value!r} is none of its choices {list(self.choices)}")
            return self.choices.index(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise RecipeError(f"{where}: {self.name} = {value!r} is outside its range [{self.low:g}, {self.high:g}]")
        return int(value) if self.kind == "int" else float(value)

    def value_of(self, stored: Any) -> Any:
        """The recipe value for what Optuna stored (a choice's index -> the choice)."""
        return self.choices[int(stored)] if self.kind == "choice" else stored

    def corners(self) -> list[Any]:
        """The values validation tries: both ends of a range, every choice."""
        if self.kind == "choice":
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name}: one of {len(self.choices)} choices"
        scale = ", log" if self.log else ""
        step = f", step {self.step:g}" if self.step else ""
        return f"{self.name}: {self.kind} in [{self.low:g}, {self.high:g}]{step}{scale}"


def _param(where: str, name: str, path: tuple, spec: dict) -> Param:
    if "choice" in spec:
        if set(spec) != {"choice"}:
            raise RecipeError(f"{where}: a choice takes only `choice: [...]`, got keys {sorted(spec)}")
        choices = spec["choice"]
        if not isinstance(choices, list) or not choices:
            raise RecipeError(f"{where}: choice needs a non-empty list of values, got {choices!r}")
        return Param(name, path, "choice", choices=tuple(choices))
    for key in spec:
        if key not in RANGE_KEYS:
            raise RecipeError(f"{where}: {unknown_name('range option', key, RANGE_KEYS)}")
    bounds = spec["range"]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)):
        raise RecipeError(f"{where}: range needs two finite numbers [low, high], got {bounds!r}")
    low, high = bounds
    if not low < high:
        raise RecipeError(f"{where}: range [{low}, {high}] is empty: low must be below high")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise RecipeError(f"{where}: log is true or false, got {log!r}")
    if log and low <= 0:
        raise RecipeError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0):
        raise RecipeError(f"{where}: step must be a positive number, got {step!r}")
    if log and step is not None:
        raise RecipeError(f"{where}: give log or step, not both (Optuna samples a log range continuously)")
    is_int = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    return Param(name, path, "int" if is_int else "float", float(low), float(high),
                 None if step is None else float(step), log)


def _is_param(node: object) -> bool:
    return isinstance(node, dict) and ("range" in node or "choice" in node)


def _find_params(node: object, path: tuple, label: str, source: str, found: list[Param]) -> None:
    if _is_param(node):
        found.append(_param(f"{source}: {label}", label, path, node))  # type: ignore[arg-type]
        return
    if isinstance(node, dict):
        for key, child in node.items():
            _find_params(child, (*path, key), f"{label}.{key}" if label else str(key), source, found)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            _find_params(child, (*path, i), f"{label}.{i}" if label else str(i), source, found)


def _step_labels(steps: list) -> list[str]:
    """A step's label in parameter names: its pass name, ``name#i`` where the name repeats, ``steps.i`` if chosen."""
    names = [next(iter(s)) if isinstance(s, dict) and len(s) == 1 and not _is_param(s) else None for s in steps]
    return [f"steps.{i}" if n is None else (n if names.count(n) == 1 else f"{n}#{i}") for i, n in enumerate(names)]


def _dotted_path(recipe: dict, dotted: str, source: str) -> tuple:
    """The path of ``search.full``'s dotted name (``distill.schedule.steps``) in a recipe; its parent must exist."""
    parts = dotted.split(".")
    steps = recipe.get("steps") if isinstance(recipe.get("steps"), list) else []
    labels = _step_labels(steps)
    if parts[0] in labels:
        i = labels.index(parts[0])
        path: tuple = ("steps", i, next(iter(steps[i])))
        parts = parts[1:]
    else:
        path = ()
    node: Any = recipe
    for key in path:
        node = node[key]
    for key in parts[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            raise RecipeError(f"{source}: search.full names {dotted!r}, but the recipe has no {key!r} there "
                              f"(steps: {', '.join(labels) or 'none'})")
        node, path = node[key], (*path, key)
    if not parts or not isinstance(node, dict):
        raise RecipeError(f"{source}: search.full names {dotted!r}, which is not a setting of the recipe")
    return (*path, parts[-1])


def _place(recipe: dict, path: tuple, value: Any) -> None:
    node = recipe
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: the recipe template, its parameters and the search settings."""

    name: str
    source: str
    template: dict  # the recipe with parameters in place (not runnable as it is)
    params: tuple[Param, ...]
    settings: SearchSettings

    def recipe_for(self, values: dict[str, Any]) -> dict:
        """The runnable recipe for parameter values by name (a choice's value, not its index)."""
        recipe = copy.deepcopy(self.template)
        for param in self.params:
            _place(recipe, param.path, values[param.name])
        return recipe

    def trial_recipe(self, values: dict[str, Any], name: str) -> dict:
        """The recipe a trial runs: ``recipe_for`` scored on val (never eval), the objectives' candidates measured."""
        recipe = self.recipe_for(values)
        recipe["name"] = name
        bench = recipe.setdefault("bench", {}) or {}
        recipe["bench"] = bench
        quality = bench.setdefault("quality", {}) or {}
        bench["quality"] = {**quality, "split": "val", **({"n": self.settings.n} if self.settings.n else {})}
        wanted = [o.candidate for o in self.settings.objectives]
        for section in (bench, bench["quality"]):  # a list of what to measure includes what the objectives read
            if section.get("candidates") is not None:
                section["candidates"] = list(dict.fromkeys([*section["candidates"], *wanted]))
        return recipe

    def front_recipe(self, values: dict[str, Any], name: str) -> dict:
        """A front member's recipe as a user runs it: ``recipe_for`` with ``search.full`` applied, the template's
        own bench (eval) and gates."""
        recipe = self.recipe_for(values)
        for dotted, value in self.settings.full.items():
            _place(recipe, _dotted_path(recipe, dotted, self.source), value)
        recipe["name"] = name
        return recipe

    def start_trials(self) -> list[dict[str, Any]]:
        """``search.start`` as Optuna's stored parameters (a choice's index), every value checked."""
        by_name = {p.name: p for p in self.params}
        trials = []
        for i, values in enumerate(self.settings.start):
            where = f"{self.source}: search.start.{i}"
            for name in values:
                if name not in by_name:
                    raise RecipeError(f"{where}: {unknown_name('searched value', name, sorted(by_name))}")
            trials.append({name: by_name[name].stored(value, where) for name, value in values.items()})
        return trials

    def parsed(self, values: dict[str, Any]) -> Recipe:
        return parse_recipe(self.recipe_for(values), self.source)

    def describe(self) -> list[str]:
        return [p.describe() for p in self.params]


def parse_space(raw: object, source: str = "space") -> SearchSpace:
    """Validate a search space (see the module's docstring); RecipeError (one line) on any defect."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{source}: a search space is a recipe mapping with a search section, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    try:
        settings = SearchSettings.model_validate(raw.pop("search", None) or {})
    except ValidationError as exc:
        raise RecipeError(validation_message(exc, SearchSettings, f"{source}: search")) from None
    params: list[Param] = []
    for key, node in raw.items():
        if key != "steps":
            _find_params(node, (key,), key, source, params)
    steps = raw.get("steps")
    if isinstance(steps, list):
        for i, (step, label) in enumerate(zip(steps, _step_labels(steps))):
            if _is_param(step):
                _find_params(step, ("steps", i), label, source, params)
            elif isinstance(step, dict) and len(step) == 1:
                [(name, config)] = step.items()
                _find_params(config, ("steps", i, name), label, source, params)
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise RecipeError(f"{source}: two searched values share the name {sorted({n for n in names if names.count(n) > 1})}")
    if not params:
        raise RecipeError(f"{source}: nothing to search: put {{range: [low, high]}} or {{choice: [...]}} in place of "
                          "a value (a plain recipe runs with `compresskit run`)")
    space = SearchSpace(str(raw.get("name") or Path(source).stem), source, raw, tuple(params), settings)
    _check_corners(space)
    space.start_trials()  # the starting points lie in the space
    if settings.full:  # the front's full-length recipe parses too (a typo in search.full is found now)
        parse_recipe(space.front_recipe({p.name: p.corners()[0] for p in params}, space.name), source)
    return space


def _check_corners(space: SearchSpace) -> None:
    """Parse the recipe with every range at its low end, at its high end, and each choice in turn (one at a time,
    the others at their low end): a value a trial may draw that the recipe refuses is found before any trial."""
    low = {p.name: p.corners()[0] for p in space.params}
    tried = [low, {p.name: p.corners()[-1] for p in space.params}]
    for param in space.params:
        tried += [{**low, param.name: value} for value in param.corners()[1:-1]]
    for values in tried:
        try:
            space.parsed(values)
        except RecipeError as exc:
            at = ", ".join(f"{k}={v!r}" for k, v in values.items() if not isinstance(v, (dict, list)))
            raise RecipeError(f"{exc} (with {at})" if at else str(exc)) from None


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search space YAML."""
    return parse_space(read_yaml(Path(path), "search space", RecipeError), str(path))
