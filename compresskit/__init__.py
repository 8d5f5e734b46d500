"""compresskit: shrink trained text-to-image generators for edge CPUs, and prove it with numbers.

    import compresskit

    report = compresskit.run("recipes/edge-int8.yaml", out="runs/edge")   # steps, bench, gates -> Report
    report = compresskit.compress(generator, ["sanitize", "export_onnx", "export_openvino", "quantize_nncf"],
                                  out="runs/mine")
    print(report.table(), report.verdict)

The names below are imported on first use, so ``import compresskit`` (and the CLI's start-up) does not import
torch; the ``TYPE_CHECKING`` block gives type checkers and IDEs the same names eagerly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import forking  # noqa: F401  (fork hooks: what a library's forked child must not inherit)

__version__ = "0.1.0"

_API = {
    # the doors (compresskit.api) and what they return
    "run": "compresskit.api",
    "compress": "compresskit.api",
    "measure": "compresskit.api",
    "gate": "compresskit.api",
    "time_artifact": "compresskit.api",
    "Report": "compresskit.bench.schema",
    "CandidateRecord": "compresskit.bench.schema",
    "GateResult": "compresskit.bench.schema",
    "Event": "compresskit.runner",
    "Recipe": "compresskit.recipe",
    "load_recipe": "compresskit.recipe",
    "load_gates": "compresskit.bench.gate",
    "compare": "compresskit.bench.compare",
    "search": "compresskit.recipe_search",
    "load_space": "compresskit.recipe_search",
    "write_front": "compresskit.recipe_search",
    # models and data
    "Generator": "compresskit.models.contract",
    "load_model": "compresskit.models",
    "save_model": "compresskit.models",
    "create_generator": "compresskit.models",
    "Artifact": "compresskit.artifact",
    "load_artifact": "compresskit.artifact",
    "CaptionedImages": "compresskit.data",
    "load_dataset": "compresskit.data",
    "build_emoji": "compresskit.data",
    "build_shapes": "compresskit.data",
    "TextEncoder": "compresskit.text",
    "TokenFeatures": "compresskit.text",
    "cache_root": "compresskit.cache",
    # errors: every one is a CompresskitError with a one-line message
    "CompresskitError": "compresskit.errors",
    "ArtifactError": "compresskit.errors",
    "CacheError": "compresskit.errors",
    "DataError": "compresskit.errors",
    "GateFailed": "compresskit.errors",
    "RecipeError": "compresskit.errors",
    "TextError": "compresskit.errors",
}
__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # the same names, for type checkers and IDEs (at run time: ``__getattr__`` below)
    from .api import compress, gate, measure, run, time_artifact
    from .artifact import Artifact, load_artifact
    from .bench.compare import compare
    from .bench.gate import load_gates
    from .bench.schema import CandidateRecord, GateResult, Report
    from .cache import cache_root
    from .data import CaptionedImages, build_emoji, build_shapes, load_dataset
    from .errors import ArtifactError, CacheError, CompresskitError, DataError, GateFailed, RecipeError, TextError
    from .models import create_generator, load_model, save_model
    from .models.contract import Generator
    from .recipe import Recipe, load_recipe
    from .recipe_search import load_space, search, write_front
    from .runner import Event
    from .text import TextEncoder, TokenFeatures


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'compresskit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
