"""A token-conditioned generator (cross-attention over MiniLM token states) through every pass and the bench."""

from __future__ import annotations

import numpy as np
import torch

from compresskit.artifact import load_artifact
from compresskit.bench.report import bench_run
from compresskit.models import DFGenerator, load_model, save_model
from compresskit.models.inputs import caption_inputs, input_names
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from compresskit.runtimes import load_runtime
from tests.passes.test_user_generators import FAST_BENCH, FAST_DISTILL, SHAPES


def attention_teacher(folder) -> None:
    torch.manual_seed(0)
    g = DFGenerator(ngf=8, text_hidden=32, fuse_hidden=16, z_dim=16, attention=[8, 16], attn_dim=16, attn_heads=2,
                    attn_query="position", qk_norm=True, token_length=24, token_layers=1, token_width=16)  # shapes32-v2's form
    with torch.no_grad():  # zero-initialised outputs make attention a no-op until trained
        for layer in g.attend.values():
            layer.out.weight.normal_(0, 0.5)
    save_model(folder, g, {"data": SHAPES})


def test_a_token_conditioned_generator_is_pruned_distilled_exported_quantised_and_benched(tmp_path):
    attention_teacher(tmp_path / "teacher")
    steps = [{"prune": {"ratio": 0.5}}, {"distill": {**FAST_DISTILL, "student": {"kind": "input"}}},
             {"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 16}}]
    gates = [{"metric": "int8_mac_share", "goal": "threshold", "value": 0.5, "candidate": "quantize_nncf"}]
    recipe = parse_recipe({"input": {"model": str(tmp_path / "teacher")}, "threads": 1, "steps": steps,
                           "bench": FAST_BENCH, "gates": gates}, "attention.yaml")
    result = run(recipe, tmp_path / "run")
    prune, distill, onnx, openvino, int8 = (r.meta for r in result.steps)
    assert input_names(result.final.io) == ["z", "text", "tokens", "token_mask"]
    pruned = load_model(result.steps[0].path)
    assert prune["params_ratio"] < 0.8 and pruned.current_config().channels != [64, 32, 16, 8]
    assert {pruned.attend[i].key.out_channels for i in ("0", "1")} == {16}  # attention widths kept whole
    assert pruned.token_in.out_channels == 16
    assert distill["steps_run"] == 12
    assert onnx["parity_max_abs_error"] < 1e-4 and openvino["parity_max_abs_error"] < 1e-4
    assert int8["int8_mac_share"] > 0.5

    # the deployed INT8 IR reads the words: another caption's tokens (same pooled vector) change the image
    runtime = load_runtime(load_artifact(result.final.path), threads=1)
    io = result.final.io
    z = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    red = caption_inputs(io, ["a small red circle at the top left"], z)
    mixed = {**red, **{k: v for k, v in caption_inputs(io, ["a large blue square at the bottom right"], z).items()
                       if k in ("tokens", "token_mask")}}
    assert np.abs(runtime(red) - runtime(mixed)).max() > 1e-3

    report = bench_run(tmp_path / "run")
    final = report.candidate("final")
    assert final.value("latency_ms_p50") > 0 and "attr_accuracy" in final.metrics
    assert report.verdict == "pass", report.failed_gates


def test_a_shallower_text_encoder_for_a_generator_that_reads_token_states_learns_them_too(tmp_path):
    from compresskit.runtimes.bundle import Bundle
    from compresskit.text import TextEncoder
    from compresskit.text.shallow import cut_encoder, load_minilm, token_state_error

    attention_teacher(tmp_path / "teacher")
    steps = [{"export_onnx": {}}, {"bundle": {"text_layers": 1, "text_steps": 60, "validation_size": 8}}]
    bundle = run(parse_recipe({"input": {"model": str(tmp_path / "teacher")}, "steps": steps}, "r.yaml"),
                 tmp_path / "run").final
    captions = ["a small red circle at the top left", "a large blue square at the center and a green triangle"]
    found = Bundle(bundle.path).embed(captions)
    assert set(found) == {"text", "tokens", "token_mask"}
    full = TextEncoder(cache=False).encode_tokens(captions, pad_to=found["tokens"].shape[1])
    mask = torch.from_numpy(found["token_mask"])
    tokenizer, minilm = load_minilm()
    batch = tokenizer(captions, padding="max_length", max_length=found["tokens"].shape[1], return_tensors="pt")
    with torch.no_grad():
        cut = cut_encoder(minilm, 1)(**batch).last_hidden_state
    distilled = float(token_state_error(torch.from_numpy(found["tokens"]), full.hidden, mask))
    cut_alone = float(token_state_error(cut * mask.unsqueeze(-1), full.hidden, mask))
    assert distilled < 0.7 * cut_alone, (distilled, cut_alone)
