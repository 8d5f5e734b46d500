from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from compresskit.generate import generate
from compresskit.models import create_generator, save_model
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    generator = create_generator(ngf=8, text_hidden=16, fuse_hidden=8, z_dim=16)
    return save_model(tmp_path_factory.mktemp("models") / "tiny", generator)


def test_generate_shapes_and_determinism(tiny_model):
    a = generate(tiny_model, ["red apple", "sun"], n=3, seed=5)
    assert a.images.shape == (2, 3, 32, 32, 3) and a.images.dtype == np.uint8
    b = generate(tiny_model, ["red apple", "sun"], n=3, seed=5)
    assert np.array_equal(a.images, b.images)
    c = generate(tiny_model, ["red apple", "sun"], n=3, seed=6)
    assert not np.array_equal(a.images, c.images)


def test_cli_generate_writes_a_labelled_grid_of_the_right_size(tiny_model, tmp_path):
    out = tmp_path / "grid.png"
    result = run_cli("generate", "red apple", "sun", "cat face", "--model", str(tiny_model),
                     "--n", "4", "--seed", "0", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n"] == 4 and summary["captions"] == ["red apple", "sun", "cat face"]
    with Image.open(out) as grid:
        # 4 columns and 3 rows of 64-px tiles, each cell padded by 8 px and 2 label lines of 13 px
        assert grid.size == (4 * (64 + 8), 3 * (64 + 6 + 2 * 13))


def test_cli_generate_bad_model_is_one_line_exit_2(tmp_path):
    result = run_cli("generate", "red apple", "--model", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "not a shipped model" in result.stderr and "Traceback" not in result.stderr


def test_cli_train_tiny(tmp_path):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "recipes" / "train" / "emoji32-tiny.yaml"
    result = run_cli("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    again = run_cli("train", str(config), "--out", str(tmp_path / "run"))
    assert again.returncode == 2 and "pass --resume" in again.stderr
