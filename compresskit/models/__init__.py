"""Generators and discriminators: a registry, ``create_generator``, io specs, and checkpoint folders.

    create_generator("dfgan", ngf=64)          a fresh generator
    load_model("emoji32-base")                 a shipped one (compresskit/zoo/), a checkpoint or artifact folder
    save_model(folder, model)                  either form (compresskit config or user factory), checksummed

Every generator satisfies the model contract (``contract.py``).
"""

from __future__ import annotations

import difflib

from torch import nn

from ..errors import ModelError
from .dfgan import DFDiscriminator, DFGenerator, GeneratorConfig
from .contract import io_spec
from .io import load_model, resolve_model_dir, save_model

GENERATORS: dict[str, type[nn.Module]] = {"dfgan": DFGenerator}


def create_generator(name: str = "dfgan", **kwargs) -> nn.Module:
    """A freshly initialised generator of a registered architecture."""
    if name not in GENERATORS:
        close = difflib.get_close_matches(name, list(GENERATORS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"unknown generator {name!r}{hint}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[name](GeneratorConfig(arch=name, **kwargs))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "GENERATORS", "DFDiscriminator", "DFGenerator", "GeneratorConfig",
    "count_params", "create_generator", "io_spec", "load_model", "resolve_model_dir", "save_model",
]
