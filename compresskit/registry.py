"""One explicit table of passes: name -> "module:Class", imported only when used."""

from __future__ import annotations

import difflib
import importlib

from .errors import RecipeError

PASSES: dict[str, str] = {
    "sanitize": "compresskit.passes.sanitize:Sanitize",
    "prune": "compresskit.passes.prune:Prune",
    "distill": "compresskit.passes.distill:Distill",
    "export_onnx": "compresskit.passes.export_onnx:ExportOnnx",
    "export_openvino": "compresskit.passes.export_openvino:ExportOpenvino",
    "quantize_nncf": "compresskit.passes.quantize_nncf:QuantizeNncf",
    "quantize_ort": "compresskit.passes.quantize_ort:QuantizeOrt",
}


def pass_class(name: str):
    if name not in PASSES:
        close = difflib.get_close_matches(name, list(PASSES), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(PASSES)}"
        raise RecipeError(f"unknown pass {name!r}; {hint}")
    module, cls = PASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def describe_passes() -> list[dict]:
    rows = []
    for name in PASSES:
        cls = pass_class(name)
        rows.append({"name": name, "about": cls.about, "accepts": list(cls.accepts), "produces": cls.produces,
                     "needs": list(cls.needs)})
    return rows
