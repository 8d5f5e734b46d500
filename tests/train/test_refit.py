from __future__ import annotations

import torch
from safetensors.torch import load_file

from compresskit.models.io import load_discriminator
from compresskit.train import train
from compresskit.train.refit import refit_discriminator
from tests.train.test_train import tiny


def test_training_ships_its_discriminator_with_the_generator(tmp_path):
    result = train(tiny(), tmp_path / "run")
    disc = load_discriminator(result.final_dir)
    assert disc is not None and disc.config["ndf"] == tiny().discriminator.ndf
    assert "discriminator.safetensors" in (result.final_dir / "checksums.sha256").read_text()


def test_a_refitted_discriminator_tells_real_images_from_the_frozen_generators(tmp_path):
    trained = train(tiny(), tmp_path / "run").final_dir
    (trained / "discriminator.safetensors").unlink()  # a teacher that ships none
    (trained / "checksums.sha256").write_text("".join(
        line + "\n" for line in (trained / "checksums.sha256").read_text().splitlines() if "discriminator" not in line))
    assert load_discriminator(trained) is None
    found = refit_discriminator(tiny(), trained, tmp_path / "with-d", steps=60)
    last = found["history"][-1]
    assert last["d_real"] > last["d_fake"], "after fitting, real pairs score above the generator's images"
    assert load_discriminator(tmp_path / "with-d") is not None
    before, after = load_file(str(trained / "model.safetensors")), load_file(str(tmp_path / "with-d" / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before), "the generator stays as it was"
