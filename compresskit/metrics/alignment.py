"""Text-image alignment: an image encoder trained against the frozen MiniLM caption vectors.

The DAMSM / R-precision idea of text-to-image GAN papers, sized for 32 px emoji: a small CNN maps an image
to a unit vector in MiniLM's 384-d sentence space, trained on the real *train* split with a softmax over
*every* train caption's vector (the frozen text embeddings are the classifier's weights, scaled by a
learned temperature). It is shipped as ``compresskit/zoo/emoji32-align`` and then scores generated images:

* ``r_precision``: the fraction of images whose own caption ranks first among it and ``R_CANDIDATES``
  random other captions (chance = 1 / (R_CANDIDATES + 1));
* ``caption_similarity``: mean cosine between the image's vector and its caption's vector.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..model_files import ZOO_DIR, verify_checksums

FORMAT = "compresskit.aligner/1"
R_CANDIDATES = 99


class AlignerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_size: int = 32
    widths: list[int] = [64, 128, 256]  # one stride-2 stage each
    text_dim: int = 384


class ImageEncoder(nn.Module):
    """uint8 NHWC or float NCHW in [-1, 1] -> unit (N, text_dim) vectors."""

    def __init__(self, config: AlignerConfig | None = None):
        super().__init__()
        self.config = config or AlignerConfig()
        layers, c_in = [], 3
        for width in self.config.widths:
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, self.config.text_dim)
        self.log_scale = nn.Parameter(torch.tensor(np.log(10.0), dtype=torch.float32))  # softmax temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        pooled = F.adaptive_avg_pool2d(self.body(images), 1).flatten(1)
        return F.normalize(self.head(pooled), dim=1)


def save_aligner(folder: Path, encoder: ImageEncoder, meta: dict) -> None:
    """Write config.json + model.safetensors into an existing (temporary) folder."""
    state = {k: v.detach().contiguous().clone() for k, v in encoder.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    config = {"format": FORMAT, "aligner": encoder.config.model_dump(), "meta": meta}
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def aligner_installed(ref: str = "emoji32-align") -> bool:
    """Whether the shipped zoo holds the alignment encoder ``ref``."""
    return (ZOO_DIR / ref / "config.json").is_file()


def load_aligner(ref: str | Path = "emoji32-align") -> ImageEncoder:
    """The alignment encoder of a zoo name or a folder (``compresskit align --out``), checked against its checksums."""
    folder = ZOO_DIR / str(ref) if (ZOO_DIR / str(ref) / "config.json").is_file() else Path(ref)
    verify_checksums(folder)
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
        state = load_file(str(folder / "model.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelError(f"cannot load the alignment encoder from {folder} ({exc}); reinstall compresskit "
                         "or retrain it with `compresskit align`") from None
    if config.get("format") != FORMAT:
        raise ModelError(f"{folder / 'config.json'} is not an alignment encoder (format {FORMAT})")
    encoder = ImageEncoder(AlignerConfig.model_validate(config["aligner"]))
    encoder.load_state_dict(state, strict=True)
    encoder.meta = config.get("meta", {})
    return encoder.eval()


def embed_images(encoder: ImageEncoder, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    encoder.eval()
    with torch.inference_mode():
        return torch.cat([encoder(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])))
                          for i in range(0, len(images), batch_size)])


def alignment_scores(
    image_vecs: torch.Tensor,
    caption_ids: torch.Tensor,
    caption_vecs: torch.Tensor,
    *,
    seed: int = 0,
    candidates: int = R_CANDIDATES,
) -> dict:
    """R-precision against ``candidates`` random other captions of ``caption_vecs``, and mean similarity.

    ``caption_ids[i]`` is the row of ``caption_vecs`` that image i was made from (or shows).
    """
    n_captions = len(caption_vecs)
    if n_captions <= candidates:
        raise ModelError(f"R-precision with {candidates} distractors needs more than {candidates} distinct captions")
    rng = torch.Generator().manual_seed(seed)
    # distractors: uniform over the other captions (draw from n-1 and shift past the true one)
    draws = torch.randint(0, n_captions - 1, (len(image_vecs), candidates), generator=rng)
    draws += (draws >= caption_ids[:, None]).long()
    own = (image_vecs * caption_vecs[caption_ids]).sum(1)
    others = torch.einsum("nd,nkd->nk", image_vecs, caption_vecs[draws])
    return {
        "r_precision": float((own > others.max(1).values).float().mean()),
        "caption_similarity": float(own.mean()),
        "n": len(image_vecs),
        "candidates": candidates,
    }
