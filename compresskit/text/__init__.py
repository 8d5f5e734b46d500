"""Caption encoding: pretrained MiniLM sentence and token features, cached on disk.

Exports are imported lazily, so the torch-free parts (``captions``) load without torch.
"""

from __future__ import annotations

import importlib

_API = {"EmbeddingCache": ".cache", "EMBED_DIM": ".encoder", "TextEncoder": ".encoder", "TokenFeatures": ".encoder",
        "check_captions": ".captions"}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'compresskit.text' has no attribute {name!r}")
