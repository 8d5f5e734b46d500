"""Generators and discriminators: a registry, ``create_generator``, io specs, and checkpoint folders.

    create_generator("dfgan", ngf=64)          a fresh generator
    load_generator("emoji32-base")             a shipped one (compresskit/zoo/) or a checkpoint folder
"""

from __future__ import annotations

import difflib

from torch import nn

from ..errors import ModelError
from .dfgan import DFDiscriminator, DFGenerator, GeneratorConfig
from .io import load_generator, resolve_model_dir, save_generator

GENERATORS: dict[str, type[nn.Module]] = {"dfgan": DFGenerator}


def create_generator(name: str = "dfgan", **kwargs) -> nn.Module:
    """A freshly initialised generator of a registered architecture."""
    if name not in GENERATORS:
        close = difflib.get_close_matches(name, list(GENERATORS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"unknown generator {name!r}{hint}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[name](GeneratorConfig(arch=name, **kwargs))


def io_spec(generator: nn.Module) -> dict:
    """Named inputs and outputs with symbolic batch: what exporters and runtimes agree on."""
    c = generator.config
    return {
        "inputs": {
            "z": {"shape": ["batch", c.z_dim], "dtype": "float32", "about": "standard normal noise"},
            "text": {"shape": ["batch", c.text_dim], "dtype": "float32", "about": "unit-norm MiniLM caption vector"},
        },
        "outputs": {
            "image": {"shape": ["batch", 3, c.image_size, c.image_size], "dtype": "float32", "about": "RGB in [-1, 1]"},
        },
    }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "GENERATORS", "DFDiscriminator", "DFGenerator", "GeneratorConfig",
    "count_params", "create_generator", "io_spec", "load_generator", "resolve_model_dir", "save_generator",
]
