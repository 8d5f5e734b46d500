"""Users' own generators: an importable factory + safetensors weights + an io spec. No pickles.

A recipe names them explicitly (nothing else is imported):

    input:
      factory: my_package.gan:build_generator   # module:callable returning an nn.Module
      kwargs: {width: 64}
      weights: path/to/model.safetensors
      z_dim: 128                                # forward(z, text) -> (N, 3, S, S) in [-1, 1]
      text_dim: 384
      image_size: 32

The model folder written for such a generator holds ``factory.json`` (the spec, plus the pruning
history that ``prune`` recorded: Torch-Pruning's list of (layer, out/in, indices)) and
``model.safetensors``. Loading imports the factory, builds a fresh instance, replays the pruning history
on it, and loads the weights strictly.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ModelError
from ..text.encoder import EMBED_DIM
from .trust import require_trusted

FACTORY_FILE = "factory.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "compresskit.factory/1"


class FactorySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict = {}
    z_dim: int = Field(ge=1)
    text_dim: int = Field(384, ge=1)
    image_size: int = Field(32, ge=4)


class UserConfig:
    """The few attributes compresskit reads from a generator's ``config`` (z_dim, text_dim, image_size)."""

    def __init__(self, spec: FactorySpec):
        self.spec = spec
        self.z_dim, self.text_dim, self.image_size = spec.z_dim, spec.text_dim, spec.image_size
        self.arch = spec.factory

    def model_dump(self) -> dict:
        return self.spec.model_dump()


def import_factory(path: str):
    module_name, _, attr = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise ModelError(f"cannot import {module_name!r} for factory {path!r} ({exc}); install it or fix the name") from None
    except AttributeError:
        raise ModelError(f"module {module_name!r} has no {attr!r} (factory {path!r})") from None
    if not callable(factory):
        raise ModelError(f"factory {path!r} is not callable")
    return factory


def example_inputs(spec: FactorySpec, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, spec.z_dim, generator=g), torch.randn(batch, spec.text_dim, generator=g)


def build(spec: FactorySpec, pruning_history: list | None = None) -> nn.Module:
    """A fresh instance from the factory, with the recorded pruning replayed on it."""
    model = import_factory(spec.factory)(**spec.kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"factory {spec.factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    if pruning_history:
        import torch_pruning as tp

        graph = tp.DependencyGraph().build_dependency(model.eval(), example_inputs=example_inputs(spec))
        graph.load_pruning_history(pruning_history)
    model.config = UserConfig(spec)
    return model.eval()


def prove_spec(model: nn.Module, spec: FactorySpec) -> None:
    """One forward with the declared ``z_dim``/``text_dim``; the output checked against ``image_size`` and [-1, 1].

    A mismatch is a ModelError (exit 2) naming the field, the declared and the actual value, before any pass runs.
    """
    try:
        images = _forward(model, spec)
    except Exception as exc:  # noqa: BLE001 - whatever the user's model raises becomes one line naming the field
        raise ModelError(_width_mismatch(model, spec, exc)) from None
    size = spec.image_size
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ModelError(f"input: the model returned {got}, not images (N, 3, {size}, {size}); forward(z, text) "
                         f"must return one image tensor")
    _, channels, height, width = images.shape
    if channels != 3:
        raise ModelError(f"input: the model draws {channels}-channel images; compresskit generators draw RGB (3 channels)")
    if (height, width) != (size, size):
        fix = f"set input.image_size: {height}" if height == width else "compresskit generators draw square images"
        raise ModelError(f"input.image_size: declared {size}, but the model draws {height}x{width} px images; {fix}")
    if not torch.isfinite(images).all():
        raise ModelError("input: the model's output holds NaN or infinite pixels for ordinary inputs; check the weights")
    low, high = float(images.min()), float(images.max())
    if low < -1.001 or high > 1.001:
        raise ModelError(f"input: the model's output spans [{low:.3g}, {high:.3g}], outside [-1, 1]; end forward "
                         f"with tanh (compresskit reads pixels in [-1, 1])")


def _forward(model: nn.Module, spec: FactorySpec):
    with torch.inference_mode():
        return model(*example_inputs(spec))


def _width_mismatch(model: nn.Module, spec: FactorySpec, exc: Exception) -> str:
    """Which declared width is wrong, and the one the model takes (found by trying its layers' input widths)."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    fields = [("z_dim", spec.text_dim), ("text_dim", spec.z_dim)]
    if spec.text_dim != EMBED_DIM:  # the caption vectors are MiniLM's 384-d: a text_dim off that is the suspect
        fields.reverse()
    for field, other in fields:
        declared = getattr(spec, field)
        widths = set()
        for module in model.modules():
            for attr in ("in_features", "in_channels"):
                value = getattr(module, attr, None)
                if isinstance(value, int):
                    widths |= {value, value - other}  # a layer reading this input alone, or concatenated with the other
        for width in sorted(w for w in widths if 1 <= w <= 65_536 and w != declared)[:64]:
            try:
                _forward(model, spec.model_copy(update={field: width}))
            except Exception:  # noqa: BLE001 - not this width
                continue
            return (f"input.{field}: declared {declared}, but the model takes {width} (a forward with {field} "
                    f"{declared} failed: {reason}); set input.{field}: {width}")
    return (f"input: the model does not run on z of width {spec.z_dim} and text of width {spec.text_dim} ({reason}); "
            f"declare the widths it was built with (input.z_dim, input.text_dim)")


def write_user_generator(folder: Path, model: nn.Module, spec: FactorySpec, *, pruning_history: list | None = None,
                         meta: dict | None = None) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    doc = {"format": FORMAT, "spec": spec.model_dump(), "pruning_history": pruning_history or [], "meta": meta or {}}
    (folder / FACTORY_FILE).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load_weights_into(model: nn.Module, weights: Path) -> None:
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{weights} is not a readable safetensors file ({exc}); export the weights with "
                         "safetensors.torch.save_file(model.state_dict(), path)") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ModelError(f"{weights} does not match the factory's model: {detail}") from None


def read_user_doc(folder: Path) -> dict:
    try:
        doc = json.loads((folder / FACTORY_FILE).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / FACTORY_FILE} is unreadable ({exc})") from None
    if doc.get("format") != FORMAT:
        raise ModelError(f"{folder / FACTORY_FILE} is not a compresskit factory spec ({FORMAT})")
    return doc


def load_user_generator(folder: Path) -> nn.Module:
    """Called by ``io.load_model``: the factory's fresh instance, history replayed, weights loaded strictly."""
    doc = read_user_doc(folder)
    try:
        spec = FactorySpec.model_validate(doc["spec"])
    except (KeyError, TypeError, ValidationError) as exc:
        raise ModelError(f"{folder / FACTORY_FILE} holds no valid factory spec ({type(exc).__name__}); "
                         "re-export the model with compresskit") from None
    require_trusted(spec.factory, folder / FACTORY_FILE)  # a downloaded folder must not run code by being loaded
    model = build(spec, doc.get("pruning_history"))
    load_weights_into(model, folder / WEIGHTS_FILE)
    model.meta = doc.get("meta", {})
    model.pruning_history = doc.get("pruning_history", [])
    return model
