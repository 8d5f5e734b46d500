from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from compresskit.errors import ModelError, PassFailed
from compresskit.models import DFDiscriminator, create_generator, save_model
from compresskit.models.io import load_discriminator, load_model
from compresskit.passes.base import PassContext
from compresskit.passes.supernet import Supernet, SupernetConfig
from compresskit.recipe import parse_recipe
from compresskit.runner import input_artifact, run
from tests.passes.conftest import recipe_dict

FAST = {"schedule": {"steps": 30, "batch_size": 8, "captions": 32, "teacher_reuse": 1, "lr": 3e-3},
        "validation": {"every": 10, "checkpoint_every": 10, "size": 8}, "width_choices": [0.25, 0.5]}


def test_a_supernet_trains_every_subnet_towards_the_teacher_and_names_its_choices(tiny_generator_dir, tmp_path):
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, {"supernet": FAST}), "r.yaml"), tmp_path / "run")
    history = json.loads((result.final.path / "supernet_history.json").read_text())
    assert history[0]["step"] == 0 and history[-1]["step"] == 30
    for name in ("largest", "middle", "smallest"):
        assert history[-1][f"{name}_l1"] < 0.8 * history[0][f"{name}_l1"], name
    supernet = load_model(result.final.path)
    assert supernet.config.channels == [16, 8, 4, 2]  # the tiny teacher's [32, 16, 8, 4] times 0.5
    assert supernet.meta["supernet"]["width_choices"] == [0.25, 0.5]
    assert result.steps[-1].meta["val_l1_smallest"] == history[-1]["smallest_l1"]


def test_a_killed_supernet_run_resumes_and_ends_where_an_uninterrupted_one_does(tiny_generator_dir, tmp_path):
    teacher = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    config = SupernetConfig(**FAST)

    class Interrupt(Exception):
        pass

    def once(out, scratch, progress=lambda done, total, stats: None, log=lambda m: None):
        out.mkdir(parents=True)
        ctx = PassContext(run_dir=tmp_path, teacher=teacher, progress=progress, log=log).for_step(
            teacher, Supernet.needs, scratch)
        Supernet(config).run(teacher, out, ctx)
        return load_file(str(out / "model.safetensors"))

    straight = once(tmp_path / "straight", tmp_path / "s1")

    def die_at_20(done, total, stats):
        if done == 20:
            raise Interrupt

    with pytest.raises(Interrupt):
        once(tmp_path / "killed", tmp_path / "s2", progress=die_at_20)
    logs = []
    resumed = once(tmp_path / "resumed", tmp_path / "s2", log=logs.append)
    assert any("resuming at step 10" in m for m in logs)  # the last checkpoint before the kill
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


@pytest.fixture
def teacher_with_discriminator(tmp_path):
    torch.manual_seed(0)
    disc = DFDiscriminator(32, 8, 384)
    return save_model(tmp_path / "teacher", create_generator(ngf=4, text_hidden=16, fuse_hidden=8), {}, disc), disc


def test_the_teachers_discriminator_is_saved_checksummed_and_loaded_with_it(teacher_with_discriminator):
    folder, disc = teacher_with_discriminator
    assert "discriminator.safetensors" in (folder / "checksums.sha256").read_text()
    loaded = load_discriminator(folder)
    assert loaded.config == {"image_size": 32, "ndf": 8, "text_dim": 384}
    for key, value in disc.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    raw = bytearray((folder / "discriminator.safetensors").read_bytes())
    raw[-1] ^= 1
    (folder / "discriminator.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="discriminator.safetensors"):
        load_discriminator(folder)


def test_the_adversarial_term_starts_from_the_teachers_discriminator_or_refuses_in_one_line(
        teacher_with_discriminator, tiny_generator_dir, tmp_path):
    folder, _ = teacher_with_discriminator
    step = {"supernet": {**FAST, "schedule": {**FAST["schedule"], "steps": 4}, "losses": {"adversarial": 0.1}}}
    result = run(parse_recipe(recipe_dict(folder, step), "r.yaml"), tmp_path / "run")
    assert "adversarial" in json.loads((result.final.path / "supernet_history.json").read_text())[-1]
    assert load_discriminator(tiny_generator_dir) is None
    with pytest.raises(PassFailed, match="ships no discriminator.*adversarial_init: fresh"):
        run(parse_recipe(recipe_dict(tiny_generator_dir, step), "r.yaml"), tmp_path / "run2")


def test_distill_can_start_its_adversarial_term_from_the_teachers_discriminator(teacher_with_discriminator,
                                                                              tiny_generator_dir, tmp_path):
    folder, _ = teacher_with_discriminator
    step = {"distill": {"schedule": {"steps": 4, "batch_size": 8, "captions": 32}, "validation": {"every": 2, "size": 8},
                        "student": {"kind": "slim", "width": 0.5},
                        "losses": {"pixel": 1.0, "adversarial": 0.1, "adversarial_init": "teacher"}}}
    assert run(parse_recipe(recipe_dict(folder, step), "r.yaml"), tmp_path / "run").steps[-1].meta["steps_run"] == 4
    with pytest.raises(PassFailed, match="ships no discriminator.*refit-disc"):
        run(parse_recipe(recipe_dict(tiny_generator_dir, step), "r.yaml"), tmp_path / "run2")


def test_shipping_a_discriminator_later_keeps_the_generators_artifacts_and_keys_the_steps_that_read_it(tmp_path):
    torch.manual_seed(0)
    teacher = save_model(tmp_path / "teacher", create_generator(ngf=4, text_hidden=16, fuse_hidden=8), {})
    first = {"supernet": {**FAST, "schedule": {**FAST["schedule"], "steps": 2}}}
    adversarial = {"distill": {"schedule": {"steps": 2, "batch_size": 8, "captions": 32},
                               "validation": {"every": 2, "size": 8}, "student": {"kind": "input"},
                               "losses": {"pixel": 1.0, "adversarial": 0.1, "adversarial_init": "teacher"}}}
    before = run(parse_recipe(recipe_dict(teacher, first), "r.yaml"), tmp_path / "run")
    save_model(teacher, load_model(teacher), {}, DFDiscriminator(32, 8, 384))  # the teacher now ships one
    after = run(parse_recipe(recipe_dict(teacher, first, adversarial), "r.yaml"), tmp_path / "run")
    assert after.steps[0].cached and after.steps[0].path == before.steps[0].path, "the supernet is reused"
    changed = DFDiscriminator(32, 8, 384)
    save_model(teacher, load_model(teacher), {}, changed)  # another discriminator: the step that reads it re-runs
    again = run(parse_recipe(recipe_dict(teacher, first, adversarial), "r.yaml"), tmp_path / "run")
    assert again.steps[0].cached and not again.steps[1].cached
    assert again.steps[1].path != after.steps[1].path
