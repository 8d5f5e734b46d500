from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compresskit.models import create_generator, save_model


@pytest.fixture(scope="session")
def tiny_generator_dir(tmp_path_factory) -> Path:
    """A tiny untrained compresskit generator folder: the input of pipeline tests."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "generator"
    return save_model(folder, create_generator(ngf=4, text_hidden=16, fuse_hidden=8))


def recipe_dict(model: Path, *steps: dict) -> dict:
    return {"input": {"model": str(model)}, "steps": list(steps)}
