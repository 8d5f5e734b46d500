"""Model folders, both forms, through one pair: ``load_model(ref)`` / ``save_model(folder, model)``. No pickles.

    compresskit form   config.json  = {"format": "compresskit.generator/1", "generator": {arch, widths...}, "meta"}
    user form          factory.json = {"format": "compresskit.factory/1", "spec", "pruning_history", "meta"}
    both               model.safetensors, checksums.sha256
    optional           discriminator.safetensors: the discriminator the generator was trained against, its
                       shape in config.json's "discriminator" ({image_size, ndf, text_dim}); distillation
                       can start its adversarial term from it (``load_discriminator``)

A reference is a shipped model name (a folder of ``compresskit/zoo/``) or a path to such a folder. The
architecture named by ``generator.arch`` is looked up in ``GENERATORS`` (``models/contract.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config_errors import validation_message
from ..errors import ModelError
from ..lookup import unknown_name
from ..model_files import ZOO_DIR, write_checksums
from .checksums import verify_model_folder
from .contract import GENERATORS, is_user_model, model_meta
from .dfgan import DFDiscriminator, GeneratorConfig
from .user import FACTORY_FILE, load_user_generator, write_user_generator

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
DISC_FILE = "discriminator.safetensors"
FORMAT = "compresskit.generator/1"


def zoo_names(kind: str = FORMAT) -> list[str]:
    """Shipped folders whose config.json has this format (generators by default; aligners are zoo members too)."""
    def has_format(folder: Path) -> bool:
        try:
            return json.loads((folder / CONFIG_FILE).read_text("utf-8")).get("format") == kind
        except (OSError, ValueError, AttributeError):
            return False

    return sorted(p.name for p in ZOO_DIR.iterdir() if has_format(p)) if ZOO_DIR.is_dir() else []


def resolve_model_dir(ref: str | Path) -> Path:
    """A zoo name or a folder path -> the checkpoint folder (checked to hold its files and their checksums)."""
    ref_str = str(ref)
    folder = ZOO_DIR / ref_str if ref_str in zoo_names() else Path(ref_str)
    if not folder.is_dir():
        names = ", ".join(zoo_names()) or "none installed"
        raise ModelError(f"no model {ref_str!r}: not a shipped model ({names}) nor a checkpoint folder")
    described = CONFIG_FILE if (folder / CONFIG_FILE).is_file() or not (folder / FACTORY_FILE).is_file() else FACTORY_FILE
    for name in (described, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ModelError(f"{folder} has no {name}; point --model at a folder written by compresskit train")
    verify_model_folder(folder)  # every file against checksums.sha256, before anything reads it
    return folder


def save_model(folder: Path, model: nn.Module, meta: dict | None = None, discriminator: nn.Module | None = None) -> Path:
    """Write ``model`` in its own form into ``folder`` (created if needed; wrap in ``atomic_dir`` to replace).

    ``meta`` defaults to the model's own; a user model's pruning history is written with it. A compresskit
    generator's ``discriminator`` (a ``DFDiscriminator``), if given, is written beside it and checksummed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = model_meta(model) if meta is None else meta
    if is_user_model(model):
        write_user_generator(folder, model, model.config.spec, pruning_history=getattr(model, "pruning_history", []),
                             meta=meta)
    else:
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        config = {"format": FORMAT, "generator": model.config.model_dump(), "meta": meta}
        if discriminator is not None:
            config["discriminator"] = dict(discriminator.config)
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in discriminator.state_dict().items()},
                      str(folder / DISC_FILE))
        save_file(state, str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    write_checksums(folder)
    return folder


def read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE} is not valid JSON ({exc}); re-export the checkpoint") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelError(f"{folder / CONFIG_FILE} is not a compresskit generator config (format {FORMAT})")
    return config


def load_model(ref: str | Path) -> nn.Module:
    """Rebuild the generator (either form) and load its weights strictly; eval mode, ``.meta`` set."""
    folder = resolve_model_dir(ref)
    if (folder / FACTORY_FILE).is_file() and not (folder / CONFIG_FILE).is_file():
        return load_user_generator(folder)
    return _load_compresskit(folder)


def _load_compresskit(folder: Path) -> nn.Module:
    config = read_config(folder)
    arch = (config.get("generator") or {}).get("arch", "dfgan")
    if arch not in GENERATORS:
        raise ModelError(f"{folder / CONFIG_FILE}: {unknown_name('architecture', arch, GENERATORS)}")
    try:
        gen_config = GeneratorConfig.model_validate(config.get("generator", {}))
    except ValidationError as exc:
        raise ModelError(validation_message(exc, GeneratorConfig, str(folder / CONFIG_FILE))) from None
    generator = GENERATORS[arch](gen_config)
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


def load_discriminator(ref: str | Path) -> nn.Module | None:
    """The discriminator a model folder ships (checksummed with it), in train mode; None when it has none."""
    folder = resolve_model_dir(ref)
    if not (folder / DISC_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        return None
    shape = read_config(folder).get("discriminator")
    if not isinstance(shape, dict) or set(shape) != {"image_size", "ndf", "text_dim"}:
        raise ModelError(f"{folder / CONFIG_FILE} has {DISC_FILE} beside it but no valid \"discriminator\" entry "
                         "({image_size, ndf, text_dim}); restore the model folder")
    disc = DFDiscriminator(**shape)
    try:
        disc.load_state_dict(load_file(str(folder / DISC_FILE)), strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelError(f"{folder / DISC_FILE} does not load into the discriminator its config.json describes "
                         f"({str(exc).splitlines()[0]}); restore the model folder") from None
    return disc.train()
