"""Generators and discriminators: a registry, ``create_generator``, io specs, and checkpoint folders.

    create_generator("dfgan", ngf=64)          a fresh generator
    load_model("emoji32-base")                 a shipped one (compresskit/zoo/), a checkpoint or artifact folder
    save_model(folder, model)                  either form (compresskit config or user factory), checksummed

Every generator satisfies the model contract (``contract.py``).
"""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from ..lookup import lookup
from .contract import GENERATORS, io_spec
from .dfgan import DFDiscriminator, DFGenerator, GeneratorConfig
from .io import load_model, resolve_model_dir, save_model


def create_generator(name: str = "dfgan", **kwargs) -> nn.Module:
    """A freshly initialised generator of a registered architecture."""
    return lookup(GENERATORS, name, "generator", error=ModelError)(GeneratorConfig(arch=name, **kwargs))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "GENERATORS", "DFDiscriminator", "DFGenerator", "GeneratorConfig",
    "count_params", "create_generator", "io_spec", "load_model", "resolve_model_dir", "save_model",
]
