"""compresskit: shrink trained text-to-image generators for edge CPUs, and prove it with numbers.

The flat public API is imported lazily, so ``import compresskit`` (and the CLI's start-up) stays fast.
"""

from __future__ import annotations

import importlib

from . import forking  # noqa: F401  (fork hooks: what a library's forked child must not inherit)

__version__ = "0.1.0"

_API = {
    "CaptionedImages": "compresskit.data",
    "load_dataset": "compresskit.data",
    "build_emoji": "compresskit.data",
    "build_shapes": "compresskit.data",
    "TextEncoder": "compresskit.text",
    "TokenFeatures": "compresskit.text",
    "CompresskitError": "compresskit.errors",
    "DataError": "compresskit.errors",
    "CacheError": "compresskit.errors",
    "TextError": "compresskit.errors",
    "cache_root": "compresskit.cache",
    "RecipeError": "compresskit.errors",
    "ArtifactError": "compresskit.errors",
    "GateFailed": "compresskit.errors",
    "load_recipe": "compresskit.recipe",
    "run": "compresskit.runner",
    "Artifact": "compresskit.artifact",
    "load_artifact": "compresskit.artifact",
    "bench_run": "compresskit.bench.report",
    "load_gates": "compresskit.bench.gate",
    "evaluate_gates": "compresskit.bench.gate",
    "compare": "compresskit.bench.compare",
    "load_model": "compresskit.models",
    "save_model": "compresskit.models",
    "create_generator": "compresskit.models",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'compresskit' has no attribute {name!r}")
