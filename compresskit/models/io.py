"""Generator checkpoint folders: ``config.json`` + ``model.safetensors`` (never a pickle).

``config.json`` = {"format": "compresskit.generator/1", "generator": GeneratorConfig, "meta": {...}}.
A reference is a shipped model name (a folder of ``compresskit/zoo/``) or a path to such a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..cache import atomic_dir
from ..config_errors import validation_message
from ..errors import ModelError
from .checksums import verify_model_folder, write_checksums
from .dfgan import DFGenerator, GeneratorConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "compresskit.generator/1"
ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"


def zoo_names(kind: str = FORMAT) -> list[str]:
    """Shipped folders whose config.json has this format (generators by default; aligners are zoo members too)."""
    def has_format(folder: Path) -> bool:
        try:
            return json.loads((folder / CONFIG_FILE).read_text("utf-8")).get("format") == kind
        except (OSError, ValueError, AttributeError):
            return False

    return sorted(p.name for p in ZOO_DIR.iterdir() if has_format(p)) if ZOO_DIR.is_dir() else []


def resolve_model_dir(ref: str | Path) -> Path:
    """A zoo name or a folder path -> the checkpoint folder (checked to hold both files)."""
    ref_str = str(ref)
    folder = ZOO_DIR / ref_str if ref_str in zoo_names() else Path(ref_str)
    if not folder.is_dir():
        names = ", ".join(zoo_names()) or "none installed"
        raise ModelError(f"no model {ref_str!r}: not a shipped model ({names}) nor a checkpoint folder")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ModelError(f"{folder} has no {name}; point --model at a folder written by compresskit train")
    verify_model_folder(folder)  # every file against checksums.sha256, before anything reads it
    return folder


def write_generator(folder: Path, generator: DFGenerator, meta: dict | None = None) -> None:
    """Write config.json + model.safetensors into an existing (temporary) folder."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in generator.state_dict().items()}
    config = {"format": FORMAT, "generator": generator.config.model_dump(), "meta": meta or {}}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def save_generator(folder: Path, generator: DFGenerator, meta: dict | None = None) -> Path:
    """Write a checkpoint folder atomically (replacing an older one at the same path)."""
    folder = Path(folder)
    with atomic_dir(folder, replace=True) as tmp:
        write_generator(tmp, generator, meta)
        write_checksums(tmp)
    return folder


def read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE} is not valid JSON ({exc}); re-export the checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelError(f"{folder / CONFIG_FILE} is not a compresskit generator config (format {FORMAT})")
    return config


def load_generator(ref: str | Path) -> DFGenerator:
    """Rebuild the generator from its config and load its weights, strictly; eval mode."""
    folder = resolve_model_dir(ref)
    config = read_config(folder)
    try:
        gen_config = GeneratorConfig.model_validate(config.get("generator", {}))
    except ValidationError as exc:
        raise ModelError(validation_message(exc, GeneratorConfig, str(folder / CONFIG_FILE))) from None
    generator = DFGenerator(gen_config)
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"{folder / WEIGHTS_FILE} is corrupt or truncated ({exc}); re-export the checkpoint") from None
    try:
        generator.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ModelError(f"{folder / WEIGHTS_FILE} does not match its config.json: {detail}") from None
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise ModelError(f"{folder / WEIGHTS_FILE} holds NaN or infinite weights; use an earlier checkpoint")
    generator.meta = config.get("meta", {})
    return generator.eval()


def load_torch_generator(folder: str | Path):
    """A compresskit generator folder (config.json) or a user factory folder (factory.json)."""
    from .user import FACTORY_FILE, load_user_generator

    if (Path(folder) / FACTORY_FILE).is_file():
        return load_user_generator(Path(folder))
    return load_generator(folder)


def write_torch_generator(folder: Path, model, meta: dict | None = None, *, pruning_history: list | None = None) -> None:
    """Write ``model`` in the form it was loaded from (compresskit config or user factory spec)."""
    from .user import UserConfig, write_user_generator

    if isinstance(getattr(model, "config", None), UserConfig):
        history = pruning_history if pruning_history is not None else getattr(model, "pruning_history", [])
        write_user_generator(folder, model, model.config.spec, pruning_history=history, meta=meta)
    else:
        write_generator(folder, model, meta)
