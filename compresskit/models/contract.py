"""The model contract: the small surface every generator offers, the project's own and a user's alike.

    Generator                 the typed surface (a ``typing.Protocol``): called with (z, *caption inputs) in the
                              io spec's order, it draws images; its ``config`` says z_dim, text_dim, image_size
    io_spec(model)            named inputs (z, text[, tokens, token_mask]) and output (image), symbolic batch
    layer_widths(model)       output width of every convolution and linear layer, by module name
    fixed_width_layers(model) layers whose output width the model's form cannot change (never pruned)
    rebuilt(model)            a fresh instance of the same form with the model's current widths
    model_meta(model)         its metadata (dataset, training run ...)

Two forms satisfy it. A compresskit generator (``config.json``: an architecture of ``GENERATORS`` and its
widths) is rebuilt from its config. A user's generator (``factory.json``: an importable factory, its
kwargs, and the pruning history Torch-Pruning recorded) is rebuilt by calling the factory and replaying
that history. ``load_model`` / ``save_model`` (``models/io.py``) read and write both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from .dfgan import DFGenerator
from .user import UserConfig, build

GENERATORS: dict[str, type[nn.Module]] = {"dfgan": DFGenerator}  # architecture name -> class (config.json's arch)


class GeneratorShape(Protocol):
    """What the package reads of every generator's ``config`` (a token-conditioned one also has ``attention`` and
    ``token_length``, read where present)."""

    z_dim: int
    text_dim: int
    image_size: int


@runtime_checkable
class Generator(Protocol):
    """Every generator, ours (``DFGenerator``) or a user factory's: a torch module that draws images in [-1, 1]
    (N, 3, image_size, image_size) from noise (N, z_dim) and its caption inputs (``text``[, ``tokens``,
    ``token_mask``]) in its io spec's order, with the ``config`` the package reads. ``isinstance`` checks the
    attributes are there; the type hints of the functions that take a generator name it."""

    config: GeneratorShape

    def forward(self, z: Tensor, *caption: Tensor) -> Tensor: ...

    def __call__(self, z: Tensor, *caption: Tensor) -> Tensor: ...

    def named_modules(self) -> Iterator[tuple[str, nn.Module]]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> dict[str, Tensor]: ...

    def eval(self) -> Generator: ...

    def train(self, mode: bool = True) -> Generator: ...


def is_user_model(model: Generator) -> bool:
    return isinstance(getattr(model, "config", None), UserConfig)


def io_spec(model: Generator) -> dict:
    """Named inputs and outputs with symbolic batch: what exporters and runtimes agree on."""
    c = model.config
    tokens = {}
    if getattr(c, "attention", None):
        tokens = {"tokens": {"shape": ["batch", c.token_length, c.text_dim], "dtype": "float32",
                             "about": "MiniLM last hidden states of the caption's tokens, zero-padded"},
                  "token_mask": {"shape": ["batch", c.token_length], "dtype": "float32",
                                 "about": "1 on the caption's tokens ([CLS] ... [SEP]), 0 on padding"}}
    return {
        "inputs": {
            "z": {"shape": ["batch", c.z_dim], "dtype": "float32", "about": "standard normal noise"},
            "text": {"shape": ["batch", c.text_dim], "dtype": "float32", "about": "unit-norm MiniLM caption vector"},
            **tokens,
        },
        "outputs": {
            "image": {"shape": ["batch", 3, c.image_size, c.image_size], "dtype": "float32", "about": "RGB in [-1, 1]"},
        },
    }


def layer_widths(model: Generator) -> dict[str, int]:
    """Output width of every convolution and linear layer."""
    return {n: getattr(m, "out_channels", None) or m.out_features for n, m in model.named_modules()
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}


def fixed_width_layers(model: Generator) -> list[str]:
    """Layers the model's own form says must keep their width (a user model: none known in advance; the
    pruner finds the unsafe ones by trying)."""
    return list(model.fixed_width_layers()) if hasattr(model, "fixed_width_layers") else []


def rebuilt(model: Generator) -> Generator:
    """A fresh instance with ``model``'s current widths (weights not copied), in eval mode."""
    if is_user_model(model):
        return build(model.config.spec, getattr(model, "pruning_history", []))
    return type(model)(model.current_config()).eval()


def model_meta(model: Generator) -> dict:
    return dict(getattr(model, "meta", {}) or {})

