from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from compresskit.models.io import load_model
from compresskit.passes.base import PassContext
from compresskit.passes.distill import Distill, DistillConfig
from compresskit.recipe import parse_recipe
from compresskit.runner import input_artifact, run
from tests.passes.conftest import recipe_dict

FAST = {"schedule": {"steps": 40, "batch_size": 8, "captions": 32},
        "validation": {"every": 10, "checkpoint_every": 10, "size": 8, "patience": 10}}


def fast(**groups) -> dict:
    """FAST with the keys of each group given updated (a group not in FAST, or a plain value, is set)."""
    return {**FAST, **{name: {**FAST.get(name, {}), **value} if isinstance(value, dict) else value
                       for name, value in groups.items()}}


def test_distillation_lowers_the_student_teacher_gap(tiny_generator_dir, tmp_path):
    steps = [{"prune": {"ratio": 0.5, "round_to": None}},
             {"distill": fast(losses={"pixel": 1.0, "feature": 1.0, "adversarial": 0.1})}]
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run")
    meta = result.steps[-1].meta
    assert meta["val_l1_best"] < 0.8 * meta["val_l1_start"]
    assert meta["student_channels"] == [16, 8, 4, 2]
    assert not (tmp_path / "run" / "scratch" / result.final.path.name).exists(), "scratch removed on success"


@pytest.mark.parametrize("step, old, moved", [
    ("distill", {"steps": 10}, "`steps` moved to `schedule.steps`"),
    ("distill", {"width": 0.5, "validate_every": 5}, "`width` moved to `student.width`, `validate_every` to "
                                                      "`validation.every`"),
    ("distill", {"student": "slim"}, "`student: slim` moved to `student.kind` (student: {kind: slim})"),
    ("distill", {"text_layers": 2, "feature_layers": ["blocks.0"]}, "`text_layers` moved to `text.layers`, "
                                                                    "`feature_layers` to `losses.feature_layers`"),
    ("supernet", {"diversity_target": 0.9}, "`diversity_target` moved to `losses.diversity_target`"),
])
def test_an_old_flat_key_is_refused_in_one_line_naming_its_new_place(tiny_generator_dir, step, old, moved):
    from compresskit.errors import RecipeError

    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe_dict(tiny_generator_dir, {step: old}), "r.yaml")
    assert str(caught.value) == f"r.yaml: step 1 ({step}): {moved}"
    with pytest.raises(RecipeError, match=r"unknown key 'schedule.step'; did you mean 'steps'\?"):
        parse_recipe(recipe_dict(tiny_generator_dir, {step: {"schedule": {"step": 10}}}), "r.yaml")


def test_slim_student_has_the_width_multiplier(tiny_generator_dir, tmp_path):
    steps = [{"distill": fast(schedule={"steps": 10}, student={"kind": "slim", "width": 0.25})}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert meta["student_channels"] == [8, 4, 2, 1]
    assert meta["student_macs"] < 0.15 * meta["teacher_macs"]


def test_slim_student_widths_can_differ_per_stage_and_a_wrong_count_is_a_clear_error(tiny_generator_dir, tmp_path):
    steps = [{"distill": fast(schedule={"steps": 4},
                              student={"kind": "slim", "width": [0.5, 0.5, 0.25, 0.25], "init": "teacher"})}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert meta["student_channels"] == [16, 8, 2, 1]  # the teacher's [32, 16, 8, 4], stage by stage
    with pytest.raises(ValueError, match="width must be in"):
        DistillConfig(student={"width": [0.5, 1.5]})
    three = [{"distill": fast(schedule={"steps": 2}, student={"kind": "slim", "width": [0.5, 0.5, 0.25]})}]
    with pytest.raises(Exception, match="width has 3 factors but the generator has 4 stages"):
        run(parse_recipe(recipe_dict(tiny_generator_dir, *three), "r.yaml"), tmp_path / "three")


def test_slim_student_can_be_shallower_and_depthwise_separable_and_still_prunes_and_exports(tiny_generator_dir, tmp_path):
    steps = [{"distill": fast(schedule={"steps": 10},
                              student={"kind": "slim", "width": 0.5, "convs_per_block": 1, "separable": True})},
             {"prune": {"ratio": 0.5, "importance": "l1", "round_to": 1}}, {"export_onnx": {}}]
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run")
    slim, pruned, exported = (r.meta for r in result.steps)
    student = load_model(result.steps[0].path)
    assert student.config.separable and student.config.convs_per_block == 1
    assert not hasattr(student.blocks[0], "conv1") and student.blocks[0].conv0[0].groups == 16
    assert slim["student_macs"] < 0.2 * slim["teacher_macs"] and slim["val_l1_best"] < slim["val_l1_start"]
    assert pruned["after"]["params"] < 0.7 * pruned["before"]["params"]
    assert exported["parity_max_abs_error"] < 1e-4


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("schedule", [{}, {"lr_schedule": "cosine", "grad_clip": 0.5}], ids=["constant", "cosine"])
def test_a_killed_distillation_resumes_and_ends_where_an_uninterrupted_one_does(tiny_generator_dir, tmp_path, schedule):
    teacher = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    config = DistillConfig(**fast(student={"kind": "slim"}, schedule=schedule))

    def once(out, scratch, progress=lambda done, total, stats: None, log=lambda m: None):
        out.mkdir(parents=True)
        ctx = PassContext(run_dir=tmp_path, teacher=teacher, progress=progress, log=log).for_step(teacher, Distill.needs, scratch)
        Distill(config).run(teacher, out, ctx)
        return load_file(str(out / "model.safetensors"))

    straight = once(tmp_path / "straight", tmp_path / "s1")

    def die_at_30(done, total, stats):
        if done == 30:
            raise Interrupt

    with pytest.raises(Interrupt):
        once(tmp_path / "killed", tmp_path / "s2", progress=die_at_30)
    logs = []
    resumed = once(tmp_path / "resumed", tmp_path / "s2", log=logs.append)
    assert any("resuming at step 20" in m for m in logs)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_teacher_reuse_trains_every_step_on_a_quarter_of_the_teacher_batches(tiny_generator_dir, tmp_path):
    steps = [{"distill": fast(student={"kind": "slim"}, schedule={"teacher_reuse": 4, "lr_schedule": "cosine"},
                              losses={"pixel": 1.0, "feature": 1.0, "diversity": 1.0})}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert meta["teacher_batches_this_session"] == FAST["schedule"]["steps"] // 4
    assert meta["steps_run"] == FAST["schedule"]["steps"] and meta["val_l1_best"] < 0.9 * meta["val_l1_start"], "it still learns"


def test_the_cosine_schedule_runs_the_learning_rate_from_lr_down_to_zero_by_the_step():
    cosine = DistillConfig(schedule={"steps": 100, "lr_schedule": "cosine"}).schedule
    assert [round(cosine.lr_factor(s), 6) for s in (0, 50, 100)] == [1.0, 0.5, 0.0]
    assert all(cosine.lr_factor(s) > cosine.lr_factor(s + 1) for s in range(99)), "falls at every step"
    constant = DistillConfig(schedule={"steps": 100}).schedule
    assert {constant.lr_factor(s) for s in range(100)} == {1.0}, "constant by default"


def test_the_diversity_term_keeps_the_teachers_spread_across_noise_and_validation_uses_val_captions(
        tiny_generator_dir, tmp_path, monkeypatch):
    """Pixel regression alone lets a small student collapse towards one image per caption; the term holds it."""
    teacher = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    asked = []
    real_captions = PassContext.captions
    monkeypatch.setattr(PassContext, "captions",
                        lambda self, n, seed=None, split="train": asked.append(split) or real_captions(self, n, seed, split))
    found = {}
    for weight, target in ((0.0, 1.0), (1.0, 1.0), (1.0, 0.6)):
        out = tmp_path / f"diversity{weight}-{target}"
        out.mkdir()
        ctx = PassContext(run_dir=tmp_path, teacher=teacher).for_step(teacher, Distill.needs, out.with_suffix(".s"))
        config = DistillConfig(**fast(schedule={"steps": 50}, validation={"size": 16},
                                      student={"kind": "slim", "width": 0.5},
                                      losses={"pixel": 1.0, "diversity": weight, "diversity_target": target}))
        found[weight, target] = Distill(config).run(teacher, out, ctx).metrics
    assert sorted(set(asked)) == ["train", "val"], "fit on train captions, validate on val captions"
    ratio = {key: metrics["val_spread_ratio"] for key, metrics in found.items()}
    assert ratio[0.0, 1.0] < 0.7, "without the term the student loses the teacher's spread"
    assert ratio[1.0, 1.0] > 0.9
    assert ratio[0.0, 1.0] < ratio[1.0, 0.6] < ratio[1.0, 1.0], "a lower target asks for less of the spread"


@pytest.mark.parametrize("rows, paired", [(None, 8), (4, 4)])
def test_diversity_rows_pairs_only_a_batchs_first_rows_the_rest_draw_captions_of_their_own(
        tiny_generator_dir, tmp_path, monkeypatch, rows, paired):
    batches = []
    teacher_model = PassContext.teacher_model

    def recording(ctx):  # the teacher the context gives, its caption vectors of every 8-row batch recorded
        model = teacher_model(ctx)
        model.register_forward_pre_hook(lambda _, args: batches.append(args[1].clone()) if len(args[1]) == 8 else None)
        return model
    monkeypatch.setattr(PassContext, "teacher_model", recording)
    teacher = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    ctx = PassContext(run_dir=tmp_path, teacher=teacher).for_step(teacher, Distill.needs, tmp_path / "s")
    config = DistillConfig(**fast(schedule={"steps": 3}, validation={"size": 16}, student={"kind": "slim", "width": 0.5},
                                  losses={"pixel": 1.0, "diversity": 1.0, "diversity_rows": rows}))
    Distill(config).run(teacher, tmp_path / "out", ctx)
    assert len(batches) == 3, "one teacher batch of 8 rows a step"
    for text in batches:
        assert all(torch.equal(text[k], text[k + 1]) for k in range(0, paired, 2)), "rows 2k, 2k+1: one caption"
        if paired < 8:  # the rest drawn one by one (both of two pairs alike by chance: 1 in 32**2)
            assert not all(torch.equal(text[k], text[k + 1]) for k in range(paired, 8, 2))
    with pytest.raises(ValueError, match="diversity_rows must be even"):
        DistillConfig(losses={"diversity_rows": 3})


def test_a_teacher_initialised_student_of_the_teachers_own_widths_is_the_teacher():
    from compresskit.models import DFGenerator, create_generator
    from compresskit.passes.students import inherit_from_teacher, slim_config

    torch.manual_seed(0)
    teacher = create_generator(ngf=4, text_hidden=16, fuse_hidden=8).eval()
    z, text = torch.randn(6, teacher.config.z_dim), torch.randn(6, teacher.config.text_dim)
    same = DFGenerator(slim_config(teacher.config, 1.0)).eval()
    kept = inherit_from_teacher(same, teacher, (z, text))
    assert torch.equal(same(z, text), teacher(z, text)), "every channel kept, in order: the teacher itself"
    assert kept["blocks.0"].tolist() == list(range(teacher.blocks[0].out_channels))
    # half the channels, one conv per block: the caption pathway is the teacher's, the channels its most active
    slim = DFGenerator(slim_config(teacher.config, 0.5, 1)).eval()
    kept = inherit_from_teacher(slim, teacher, (z, text))
    assert torch.equal(slim.text_mlp[1].weight, teacher.text_mlp[1].weight)
    assert torch.equal(slim.blocks[1].fuse0.affine0.gamma[0].weight, teacher.blocks[1].fuse0.affine0.gamma[0].weight)
    assert torch.equal(slim.blocks[1].shortcut.weight, teacher.blocks[1].shortcut.weight[kept["blocks.1"]][:, kept["blocks.0"]])
    cond = torch.cat([z, teacher.text_mlp(text)], 1)  # the teacher's block-0 output, by hand
    active = teacher.blocks[0](teacher.stem(cond).view(6, -1, 4, 4), cond).abs().mean((0, 2, 3))
    assert set(kept["blocks.0"].tolist()) == set(active.topk(len(kept["blocks.0"])).indices.tolist())


def test_a_token_conditioned_teacher_initialises_its_slim_student_too(tmp_path):
    from compresskit.models import DFGenerator
    from compresskit.models.contract import io_spec
    from compresskit.models.inputs import caption_inputs, input_names
    from compresskit.passes.students import inherit_from_teacher, slim_config
    from tests.passes.test_token_generator import attention_teacher

    attention_teacher(tmp_path / "t")
    teacher = load_model(tmp_path / "t").eval()
    io = io_spec(teacher)
    inputs = caption_inputs(io, ["a red circle at the top left", "a blue square and a green star"] * 3, torch.randn(6, 16))
    args = tuple(torch.from_numpy(inputs[name]) for name in input_names(io))
    same = DFGenerator(slim_config(teacher.config, 1.0)).eval()
    inherit_from_teacher(same, teacher, args)
    assert torch.equal(same(*args), teacher(*args)), "every channel kept, attention and token path too"
    slim = DFGenerator(slim_config(teacher.config, 0.5, 1)).eval()
    kept = inherit_from_teacher(slim, teacher, args)
    assert torch.equal(slim.token_in.weight, teacher.token_in.weight)
    assert torch.equal(slim.attend["1"].out.weight, teacher.attend["1"].out.weight[kept["blocks.1"]])
    assert torch.equal(slim.attend["0"].position, teacher.attend["0"].position)


def test_a_slim_student_can_keep_fewer_attention_and_token_layers_and_starts_from_the_teachers(tmp_path):
    from compresskit.models import DFGenerator
    from compresskit.models.contract import io_spec
    from compresskit.models.inputs import caption_inputs, input_names
    from compresskit.passes.base import PassFailed
    from compresskit.passes.students import inherit_from_teacher, slim_config
    from tests.passes.test_token_generator import attention_teacher

    attention_teacher(tmp_path / "t")  # cross-attention at 8 and 16 px, one token-transformer layer
    teacher = load_model(tmp_path / "t").eval()
    io = io_spec(teacher)
    inputs = caption_inputs(io, ["a red circle at the top left", "a blue square and a green star"] * 3, torch.randn(6, 16))
    args = tuple(torch.from_numpy(inputs[name]) for name in input_names(io))
    slim = DFGenerator(slim_config(teacher.config, 0.5, 1, attention=[16], token_layers=0)).eval()
    assert list(slim.attend) == ["1"] and not hasattr(slim, "token_mix") and slim.config.token_layers == 0
    assert slim.input_names == teacher.input_names, "the student reads the same caption tokens"
    inherit_from_teacher(slim, teacher, args)
    tokens = teacher.token_norm(args[2]).transpose(1, 2)
    for name in ("key", "value"):  # no token transformer: keys and values start as the teacher's after token_in
        expected = getattr(teacher.attend["1"], name)(teacher.token_in(tokens))
        assert torch.allclose(getattr(slim.attend["1"], name)(tokens), expected, atol=1e-5)
    assert torch.equal(slim.attend["1"].position, teacher.attend["1"].position)
    kept = DFGenerator(slim_config(teacher.config, 0.5, 1, attention=[8], token_layers=1)).eval()
    inherit_from_teacher(kept, teacher, args)
    assert torch.equal(kept.token_mix[0].qkv.weight, teacher.token_mix[0].qkv.weight)
    assert torch.equal(kept.attend["0"].key.weight, teacher.attend["0"].key.weight)
    with pytest.raises(PassFailed, match=r"non-empty subset of the teacher's cross-attention resolutions \[8, 16\]"):
        slim_config(teacher.config, 0.5, attention=[32])
    with pytest.raises(PassFailed, match="non-empty subset"):
        slim_config(teacher.config, 0.5, attention=[])
    with pytest.raises(PassFailed, match="token_layers 2 is more than the teacher's 1"):
        slim_config(teacher.config, 0.5, token_layers=2)
    pooled = DFGenerator(ngf=4, text_hidden=16, fuse_hidden=8).config
    with pytest.raises(PassFailed, match="apply to a teacher that reads caption tokens"):
        slim_config(pooled, 0.5, attention=[8])


def test_a_student_can_learn_from_the_shallow_text_encoder_its_bundle_will_ship(tiny_generator_dir, tmp_path):
    import numpy as np

    from compresskit.cache import cache_root
    from compresskit.passes.calibration import dataset_captions
    from compresskit.runtimes.bundle import Bundle
    from compresskit.runtimes.text_encoder import encoder_onnx_inputs

    text = {"layers": 1, "steps": 40, "lr": 1e-3}  # distill's text group; the bundle takes them as text_*
    # the incoming model as the student, fp32: before any step it *is* the teacher, so its validation L1 at step 0
    # is what the inputs alone make: zero on the full MiniLM's vectors, the shallow encoder's error on its own
    same = fast(schedule={"steps": 1}, student={"kind": "input"}, bf16=False)
    full = run(parse_recipe(recipe_dict(tiny_generator_dir, {"distill": same}), "r.yaml"), tmp_path / "full")
    assert full.steps[0].meta["val_l1_start"] == 0.0 and full.steps[0].meta["student_text_layers"] == 6
    steps = [{"distill": {**same, "text": text}}, {"export_onnx": {}},
             {"bundle": {"validation_size": 8, **{f"text_{key}": value for key, value in text.items()}}}]
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "shallow")
    distill, bundle = result.steps[0].meta, result.final
    assert distill["val_l1_start"] > 1e-3 and distill["student_text_layers"] == 1
    shipped = (bundle.path / "text_encoder.onnx").read_bytes()  # the one encoder both steps took from the cache
    assert any(f.read_bytes() == shipped for f in (cache_root() / "text-encoder-shallow").glob("*/text_encoder.onnx"))
    # what the student read is what the bundle feeds its generator: the same encoder, the same inputs
    captions = dataset_captions(bundle.dataset, 6, 3, "val")
    read = encoder_onnx_inputs(bundle.path / "text_encoder.onnx", bundle.io, captions)
    assert np.allclose(read["text"], Bundle(bundle.path).embed(captions)["text"], atol=1e-5)


def test_teacher_init_runs_in_the_pass_and_refuses_what_it_cannot_start(tiny_generator_dir, tmp_path):
    steps = [{"distill": fast(schedule={"steps": 10}, losses={"pixel": 1.0, "feature": 1.0},
                              student={"kind": "slim", "width": 0.5, "convs_per_block": 1, "init": "teacher"})}]
    meta = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").steps[-1].meta
    assert meta["student_channels"] == [16, 8, 4, 2] and meta["val_l1_best"] <= meta["val_l1_start"]
    with pytest.raises(ValueError, match="init: teacher applies to kind: slim only"):
        DistillConfig(student={"init": "teacher"})
    separable = [{"distill": fast(schedule={"steps": 2},
                                  student={"kind": "slim", "separable": True, "init": "teacher"})}]
    with pytest.raises(Exception, match="full 3x3 convs"):
        run(parse_recipe(recipe_dict(tiny_generator_dir, *separable), "r.yaml"), tmp_path / "sep")


def test_the_perceptual_terms_compare_lite0_maps_and_keep_the_teachers_perceptual_spread(tiny_generator_dir, tmp_path):
    from compresskit.metrics.features import lite0
    from compresskit.train.losses import perceived as _perceived
    from compresskit.train.losses import perceptual_distance as _perceptual_distance

    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    maps = _perceived(lite0(64), images, [2, 4, 7])
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 16, 16), (40, 8, 8), (80, 4, 4)]  # Lite0's widths, 64 px in
    assert torch.allclose(maps[0].norm(dim=1), torch.ones(4, 16, 16), atol=1e-4), "unit channel vectors"
    assert _perceptual_distance(maps, maps).item() == 0.0
    assert _perceptual_distance(maps, _perceived(lite0(64), images.flip(-1), [2, 4, 7])).item() > 0.01
    # the spread the diversity term compares: one caption's two noises drawn alike -> 0, drawn apart -> > 0
    pairs = lambda ms: ([m[0::2] for m in ms], [m[1::2] for m in ms])  # noqa: E731
    alike = _perceived(lite0(64), images[[0, 0, 2, 2]], [2, 4, 7])
    assert _perceptual_distance(*pairs(alike)).item() == 0.0 and _perceptual_distance(*pairs(maps)).item() > 0.01

    teacher = input_artifact(str(tiny_generator_dir), tmp_path / "artifacts")
    ctx = PassContext(run_dir=tmp_path, teacher=teacher).for_step(teacher, Distill.needs, tmp_path / "s")
    (tmp_path / "out").mkdir()
    config = DistillConfig(**fast(schedule={"steps": 20}, student={"kind": "slim", "width": 0.5},
                                  losses={"pixel": 1.0, "perceptual": 1.0, "perceptual_diversity": 1.0,
                                          "perceptual_px": 64, "perceptual_maps": [2, 4], "perceptual_rows": 4}))
    Distill(config).run(teacher, tmp_path / "out", ctx)
    history = json.loads((tmp_path / "out" / "distill_history.json").read_text())
    assert {"perceptual", "perceptual_diversity"} <= set(history[-1]) and history[-1]["perceptual"] > 0
    for bad, words in (({"perceptual_rows": 3}, "even"), ({"perceptual_maps": [16]}, "blocks 0-15")):
        with pytest.raises(ValueError, match=words):
            DistillConfig(losses=bad)
