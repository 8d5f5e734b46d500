from __future__ import annotations

from pathlib import Path

from PIL import Image

from compresskit.data import build_shapes
from compresskit.models import load_model
from compresskit.models.card import training_figures, write_card
from compresskit.train import load_train_config, train

TINY = Path(__file__).resolve().parents[2] / "recipes" / "train" / "emoji32-tiny.yaml"


def test_card_packages_a_run_with_measured_figures(tmp_path):
    run = train(load_train_config(TINY), tmp_path / "run")
    folder = write_card(tmp_path / "run", tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "checksums.sha256", "config.json",
                                                        "model.safetensors", "samples.png"]
    generator = load_model(folder)
    assert generator.meta["step"] == 6 and generator.meta["name"] == "model"
    card = (folder / "MODEL_CARD.md").read_text()
    params = sum(p.numel() for p in generator.parameters())
    assert f"| parameters | {params:,} " in card
    assert "| steps | 6 at batch 16 (96 images seen) |" in card
    figures = training_figures(tmp_path / "run", 6)
    assert 0 < figures["wall_seconds"] <= run.seconds + 1
    with Image.open(folder / "samples.png") as grid:
        assert grid.size[0] == 8 * (64 + 8)  # 8 samples per caption


def test_card_from_a_checkpoint_counts_only_its_steps(tmp_path):
    train(load_train_config(TINY), tmp_path / "run")
    folder = write_card(tmp_path / "run", tmp_path / "model", checkpoint=3)
    assert "| steps | 3 at batch 16" in (folder / "MODEL_CARD.md").read_text()


def test_shapes_card_reports_controllability_and_skips_kid_on_a_tiny_split(tmp_path):
    tiny_shapes = TINY.with_name("shapes32-tiny.yaml")
    train(load_train_config(tiny_shapes), tmp_path / "run")
    card = (write_card(tmp_path / "run", tmp_path / "model") / "MODEL_CARD.md").read_text()
    n_eval = build_shapes(80, seed=0).splits.count("eval")
    assert 5 < n_eval < 50 and f"| KID, FID | not measured: {n_eval} eval captions, fewer than the 50 they need |" in card
    real_row = next(line for line in card.splitlines() if line.startswith("| attribute accuracy: object |"))
    assert real_row.endswith("| 1.000 |"), "the reader is exact on the real eval images"
    whole = next(line for line in card.splitlines() if line.startswith("| whole-object accuracy, all ("))
    assert whole.endswith("| 1.000 |")
    assert "| diversity (" in card and "token states" not in card


def test_card_names_token_inputs_and_the_variety_terms_of_the_objective(tmp_path):
    config = load_train_config(TINY.with_name("shapes32-tiny.yaml"))
    config = config.model_copy(update={
        "generator": config.generator.model_copy(update={"attention": [16], "attn_dim": 8, "attn_heads": 2}),
        "recon_weight": 5.0, "recon_until": 3, "diversity_weight": 0.5})
    train(config, tmp_path / "run")
    card = (write_card(tmp_path / "run", tmp_path / "model") / "MODEL_CARD.md").read_text()
    assert "token states `tokens` (24 x 384, zero-padded)" in card and "after the 16x16 blocks" in card
    assert "(annealed linearly to 0 at step 3)" in card and "plus mode seeking (DSGAN): 0.5 /" in card
