"""Passes by name: one explicit table of built-ins, plus plugins from the ``compresskit.passes`` entry points.

A pass in another package registers in that package's ``pyproject.toml``::

    [project.entry-points."compresskit.passes"]
    blur = "my_package.blur:Blur"        # a compresskit.passes.base.Pass subclass

and is then used by name in a recipe, listed by ``compresskit passes`` and validated like a built-in (its
config, formats, needs and declared metrics). Nothing is imported until a pass is used. A plugin may not
take a built-in's name: the built-in keeps it and ``compresskit passes`` reports the clash.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from .errors import RecipeError
from .lookup import lookup
from .passes.base import contract_problems

ENTRY_POINT_GROUP = "compresskit.passes"

PASSES: dict[str, str] = {  # the built-ins
    "sanitize": "compresskit.passes.sanitize:Sanitize",
    "prune": "compresskit.passes.prune:Prune",
    "distill": "compresskit.passes.distill:Distill",
    "export_onnx": "compresskit.passes.export_onnx:ExportOnnx",
    "export_openvino": "compresskit.passes.export_openvino:ExportOpenvino",
    "quantize_nncf": "compresskit.passes.quantize_nncf:QuantizeNncf",
    "quantize_ort": "compresskit.passes.quantize_ort:QuantizeOrt",
    "bundle": "compresskit.passes.bundle:Bundle",
    "supernet": "compresskit.passes.supernet:Supernet",
    "select_subnet": "compresskit.passes.select_subnet:SelectSubnet",
}


@functools.cache
def _plugins() -> tuple[dict[str, tuple[str, str]], tuple[str, ...]]:
    """({name: ("module:Class", distribution)}, clashes) from the installed entry points."""
    found: dict[str, tuple[str, str]] = {}
    clashes = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        if ep.name in PASSES or ep.name in found:
            clashes.append(f"{dist} registers pass {ep.name!r}, a name already taken; the plugin's is not used")
            continue
        found[ep.name] = (ep.value, dist)
    return found, tuple(clashes)


def all_passes() -> dict[str, str]:
    """Every usable pass name -> "module:Class": built-ins first, then plugins."""
    return {**PASSES, **{name: value for name, (value, _) in _plugins()[0].items()}}


def plugin_clashes() -> list[str]:
    return list(_plugins()[1])


def origin(name: str) -> str:
    """"compresskit" for a built-in, else the distribution that registered it."""
    return "compresskit" if name in PASSES else _plugins()[0][name][1]


@functools.cache
def pass_class(name: str):
    """The class registered as ``name``, imported and checked against the pass contract."""
    table = all_passes()
    module, _, attr = lookup(table, name, "pass", error=RecipeError).partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"pass {name!r} ({table[name]}, from {origin(name)}) cannot be imported ({exc}); "
                          "reinstall the package that provides it") from None
    problems = contract_problems(cls)
    if not problems and cls.name != name:
        problems = [f"its name attribute is {cls.name!r}, registered as {name!r}"]
    if problems:
        raise RecipeError(f"pass {name!r} ({table[name]}, from {origin(name)}) breaks the pass contract: "
                          f"{problems[0]}; fix the pass")
    return cls


def describe_passes() -> list[dict]:
    rows = []
    for name in all_passes():
        cls = pass_class(name)
        rows.append({"name": name, "about": cls.about, "accepts": [str(f) for f in cls.accepts],
                     "produces": str(cls.produces), "needs": list(cls.needs), "metrics": list(cls.metrics),
                     "from": origin(name)})
    return rows
