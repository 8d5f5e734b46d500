"""Every shipped model (compresskit/zoo/*) is tested the day it is added (timm-style parametrisation)."""

from __future__ import annotations

import json

import pytest
import torch

from compresskit.models import load_model, resolve_model_dir
from compresskit.models.io import ZOO_DIR, zoo_names
from compresskit.models.stats import generator_stats

SHIPPED = zoo_names()


def test_the_teachers_ship_with_the_package():
    assert {"emoji32-base", "emoji32-v3", "shapes32-base", "shapes32-v2"} <= set(SHIPPED)


def test_every_zoo_folder_is_complete():
    for folder in ZOO_DIR.iterdir() if ZOO_DIR.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith((".", "_")):
            files = {p.name for p in folder.iterdir()}
            assert {"config.json", "model.safetensors", "MODEL_CARD.md"} <= files, folder
            if folder.name in SHIPPED:
                assert "samples.png" in files, folder


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_by_name_and_its_card_matches(name):
    folder = resolve_model_dir(name)
    assert folder == ZOO_DIR / name
    generator = load_model(name)
    card = (folder / "MODEL_CARD.md").read_text()
    stats = generator_stats(generator)
    assert f"| parameters | {stats['params']:,} " in card
    assert f"| MACs per image | {stats['macs_per_image']:,} " in card
    assert (folder / "samples.png").stat().st_size > 10_000
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 30 * 2**20, "keep shipped checkpoints compact"
    assert json.loads((folder / "config.json").read_text())["meta"]["name"] == name
    assert "## Quality" in card and "| KID" in card, "the card carries measured quality (or says why not)"


@pytest.mark.parametrize("name", [n for n in SHIPPED if "tiny" not in n])  # tiny: 6 steps, for smoke tests
def test_shipped_model_output_depends_on_the_caption(name):
    from compresskit.models import io_spec
    from compresskit.models.inputs import call_torch, caption_inputs

    generator = load_model(name)
    z = torch.randn(4, generator.config.z_dim, generator=torch.Generator().manual_seed(0))
    shapes = generator.meta.get("data", {}).get("name") == "shapes"
    captions = ["a large red circle at the center", "a small blue square at the top left"] if shapes else ["red apple", "sun"]
    with torch.no_grad():
        a, b = (call_torch(generator, caption_inputs(io_spec(generator), [caption] * 4, z)) for caption in captions)
    assert torch.isfinite(a).all()
    assert (a - b).abs().mean() > 0.05, "different captions must give different images"
