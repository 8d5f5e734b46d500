"""The bundle: tokenizer + text encoder + generator that turns captions into images without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compresskit.artifact import load_artifact
from compresskit.errors import ArtifactError
from compresskit.recipe import parse_recipe
from compresskit.runner import run
from compresskit.runtimes import OPENVINO_XML
from compresskit.runtimes.bundle import BUNDLE_FILE, Bundle
from tests.passes.conftest import recipe_dict

CAPTIONS = ["red apple", "a small green triangle at the bottom right and a large blue square at the center"]


@pytest.fixture(scope="module")
def bundled(tiny_generator_dir, tmp_path_factory):
    steps = [{"export_onnx": {}}, {"export_openvino": {}}, {"bundle": {"validation_size": 16}}]
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path_factory.mktemp("b") / "run")
    return load_artifact(result.steps[1].path), result.final


def test_the_bundle_draws_what_minilm_in_torch_and_the_generator_ir_draw(bundled):
    from compresskit.models.inputs import caption_inputs
    from compresskit.runtimes import openvino_runtime

    generator_ir, bundle = bundled
    assert bundle.format == "bundle" and bundle.meta["text_cosine_vs_fp32"] > 0.9999
    assert {"tokenizer.json", "text_encoder.xml", "generator.xml", BUNDLE_FILE} <= set(bundle.files)
    z = np.random.default_rng(0).standard_normal((2, generator_ir.io["inputs"]["z"]["shape"][1])).astype(np.float32)
    images = Bundle(bundle.path).generate(CAPTIONS, seed=0)
    expected = openvino_runtime(generator_ir.file("model.xml"))(caption_inputs(generator_ir.io, CAPTIONS, z))
    expected = np.round((np.clip(expected, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1, "same tokens, same vectors, same image"
    assert not np.array_equal(images[0], images[1]), "another caption draws another image"


def test_loading_and_running_the_bundle_imports_neither_torch_nor_transformers(bundled):
    _, bundle = bundled
    code = ("import sys\nfrom compresskit.runtimes.bundle import Bundle\n"
            f"images = Bundle({str(bundle.path)!r}, threads=1).generate(['red apple'], seed=3)\n"
            "print(images.shape, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.split("\n")[-2] == "(1, 32, 32, 3) False False"


def test_a_bundle_first_image_and_memory_are_probed_in_a_fresh_process_without_torch(bundled):
    from compresskit.bench.speed import probe

    _, bundle = bundled
    found = probe(bundle.path, 1)
    assert found["torch_imported"] is False
    assert 0 < found["first_inference_ms"] < 30_000 and found["peak_rss_mb"] > found["baseline_rss_mb"]


def test_an_onnx_generator_bundles_with_onnxruntime_and_int8_text_asks_for_openvino(tiny_generator_dir, tmp_path):
    steps = [{"export_onnx": {}}, {"bundle": {"validation_size": 8}}]
    bundle = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").final
    spec = json.loads((bundle.path / BUNDLE_FILE).read_text())
    assert spec["text_encoder"]["backend"] == spec["generator"]["backend"] == "onnxruntime"
    assert Bundle(bundle.path).generate(["cat face"]).shape == (1, 32, 32, 3)
    steps = [{"export_onnx": {}}, {"bundle": {"text_encoder": "int8"}}]
    with pytest.raises(Exception, match="int8 is built with NNCF for OpenVINO"):
        run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r2.yaml"), tmp_path / "run2")


def test_bad_bundle_folders_and_captions_are_one_line_errors(bundled, tmp_path):
    from compresskit.errors import TextError

    with pytest.raises(ArtifactError, match="is not a bundle"):
        Bundle(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot be read"):
        Bundle(tmp_path)
    with pytest.raises(TextError, match="wrap a single caption"):
        Bundle(bundled[1].path).generate("red apple")
    broken = tmp_path / "broken"
    shutil.copytree(bundled[1].path, broken)
    (broken / "word_embeddings.npy").write_bytes(b"not an array")
    with pytest.raises(ArtifactError, match="word_embeddings.npy does not match its manifest checksum.*rebuild the bundle"):
        Bundle(broken)


def test_generate_draws_a_grid_from_a_run_final_bundle_without_the_torch_generator(bundled, tmp_path):
    from tests.helpers import run_cli

    ir, bundle = bundled
    run_dir = bundle.path.parent.parent
    assert (run_dir / "final").resolve() == bundle.path.resolve(), "the run links its last step as final"
    grid = tmp_path / "grid.png"
    done = run_cli("generate", "red apple", "cat face", "--model", str(run_dir / "final"), "--n", "3",
                   "-o", str(grid), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["runtime"] == "bundle" and summary["image_size"] == 32
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    z = np.random.default_rng(0).standard_normal((3, Bundle(bundle.path).z_dim)).astype(np.float32)
    rows = Bundle(bundle.path).generate_grid(["red apple", "cat face"], n=3, seed=0)
    assert np.array_equal(rows[1], Bundle(bundle.path).generate(["cat face"] * 3, z=z)), "column j: one noise"
    assert json.loads(run_cli("generate", "red apple", "--model", str(run_dir), "--n", "1", "-o", str(grid),
                              "--json").stdout)["model"] == str(run_dir / "final")
    refused = run_cli("generate", "red apple", "--model", str(ir.path), "-o", str(tmp_path / "no.png"))
    assert refused.returncode == 2 and "end the recipe with a bundle step" in refused.stderr
    assert not (tmp_path / "no.png").exists()


def test_the_pass_tokenises_each_caption_as_the_bundle_does_padded_to_a_multiple_of_eight(bundled):
    from compresskit.passes.bundle import PAD_TO_MULTIPLE_OF, _tokenized
    from compresskit.runtimes.bundle import load_tokenizer
    from compresskit.text.encoder import MAX_TOKENS
    from compresskit.text.export import tokenizer_file

    tokenizer = load_tokenizer(tokenizer_file(), MAX_TOKENS, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)
    captions = ["red apple", "grinning face with big eyes", "a small green triangle at the bottom right and a large "
                                                            "blue square at the center"]
    items = _tokenized(tokenizer, captions)
    assert [item["input_ids"].shape for item in items] == [(1, 8), (1, 8), (1, 24)], "not 128, not one per length"
    assert [int(item["attention_mask"].sum()) for item in items] == [4, 7, 18], "[CLS] words [SEP], the rest masked"
    bundle = Bundle(bundled[1].path)
    assert [e.ids for e in bundle.tokenizer.encode_batch(captions[:1])] == [items[0]["input_ids"][0].tolist()]


def test_the_word_embedding_table_leaves_the_graph_and_numpy_looks_it_up_as_the_graph_did(bundled):
    import openvino as ov

    from compresskit.text.export import text_encoder_onnx

    _, bundle = bundled
    spec = json.loads((bundle.path / BUNDLE_FILE).read_text())["text_encoder"]["word_embeddings"]
    assert spec == {"input": "inputs_embeds", "table": "word_embeddings.npy"}, "fp32: the table alone, no scale"
    table = np.load(bundle.path / "word_embeddings.npy")
    assert table.shape == (30522, 384) and table.dtype == np.float32
    inputs = {p.get_any_name() for p in ov.Core().read_model(bundle.path / "text_encoder.xml").inputs}
    assert inputs == {"input_ids", "attention_mask", "inputs_embeds"}
    assert b'"30522,384"' not in (bundle.path / "text_encoder.xml").read_bytes(), "no table left in the graph"
    whole = ov.Core().compile_model(text_encoder_onnx(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ours = Bundle(bundle.path)
    encoded = ours.tokenizer.encode_batch(CAPTIONS)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    expected = whole({"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encoded])})[0]
    assert np.allclose(ours.embed(CAPTIONS)["text"], expected, atol=1e-5)


def test_an_int8_text_encoder_is_quantised_and_keeps_the_sentence_vector(tiny_generator_dir, tmp_path):
    steps = [{"export_onnx": {}}, {"export_openvino": {}},
             {"bundle": {"text_encoder": "int8", "subset_size": 32, "validation_size": 16, "max_drop": 0.01}}]
    bundle = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").final
    assert b"FakeQuantize" in (bundle.path / "text_encoder.xml").read_bytes()
    table, scales = np.load(bundle.path / "word_embeddings.npy"), np.load(bundle.path / "word_embedding_scales.npy")
    assert table.dtype == np.int8 and table.shape == (30522, 384) and scales.shape == (30522, 1), "INT8 rows, own scale"
    assert 0.99 - 1e-6 <= bundle.meta["text_cosine_vs_fp32"] < 1.0, "accuracy control holds the cosine within max_drop"
    vector = Bundle(tmp_path / "run" / "final").embed(["red apple"])["text"]
    assert vector.shape == (1, 384) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
    from compresskit.bench.measure import generator_payload, runs_int8

    assert generator_payload(bundle) == ("openvino", bundle.path / "generator.xml")
    assert not runs_int8(bundle), "the generator's peak is its own precision's, whatever the text encoder's"


@pytest.mark.parametrize("vnni", [False, True])
def test_text_encoder_auto_is_int8_with_int8_dot_products_and_fp32_without_and_says_which(vnni, monkeypatch):
    from compresskit import hardware
    from compresskit.passes.bundle import Bundle as BundlePass
    from compresskit.passes.bundle import _auto_text_precision
    from compresskit.passes.execute import pass_output_id

    for name in hardware.ISA_LIMIT_VARS:  # the suite itself may run capped
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hardware, "isa", lambda flags=None: {"avx2": True, "avx512": vnni, "vnni": vnni,
                                                             "avx512_bf16": False, "amx": False})
    precision, why = _auto_text_precision("openvino")
    assert precision == ("int8" if vnni else "fp32")
    assert ("has INT8 dot-product instructions (AVX512-VNNI)" if vnni else "no INT8 dot-product instructions (AVX2)") in why
    assert _auto_text_precision("onnxruntime")[0] == "fp32"
    auto_id = pass_output_id(BundlePass, "bundle", {"text_encoder": "auto"}, "parent", seed=0)
    monkeypatch.setattr(hardware, "isa", lambda flags=None: {"avx2": True, "avx512": not vnni, "vnni": not vnni,
                                                             "avx512_bf16": False, "amx": False})
    assert pass_output_id(BundlePass, "bundle", {"text_encoder": "auto"}, "parent", seed=0) != auto_id, \
        "a shared cache keeps the INT8 and the fp32 bundle apart"
    assert (pass_output_id(BundlePass, "bundle", {"text_encoder": "int8"}, "parent", seed=0)
            == pass_output_id(BundlePass, "bundle", {"text_encoder": "int8"}, "parent", seed=0))


def test_text_encoder_auto_bundles_fp32_on_a_cpu_without_vnni(tiny_generator_dir, tmp_path, monkeypatch):
    from compresskit import hardware

    for name in hardware.ISA_LIMIT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an AVX512-VNNI CPU capped to AVX2 counts as AVX2
    monkeypatch.setattr(hardware, "isa", lambda flags=None: {"avx2": True, "avx512": True, "vnni": True,
                                                             "avx512_bf16": False, "amx": False})
    assert hardware.fast_int8() == (False, "AVX512-VNNI capped by ONEDNN_MAX_CPU_ISA=AVX2")
    steps = [{"export_onnx": {}}, {"export_openvino": {}}, {"bundle": {"text_encoder": "auto", "validation_size": 8}}]
    logged: list[str] = []
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run",
                 on_event=lambda event: logged.append(event.message or ""))
    bundle = result.final
    spec = json.loads((bundle.path / BUNDLE_FILE).read_text())
    assert spec["text_encoder"]["precision"] == "fp32" and b"FakeQuantize" not in (bundle.path / "text_encoder.xml").read_bytes()
    assert np.load(bundle.path / "word_embeddings.npy").dtype == np.float32
    assert any("text_encoder auto: fp32 (this CPU has no INT8 dot-product instructions" in line for line in logged)
    assert Bundle(bundle.path).generate(["cat face"]).shape == (1, 32, 32, 3)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert hardware.fast_int8() == (True, "AVX512-VNNI")


@pytest.mark.parametrize("vnni", [True, False])
def test_generator_auto_bundles_the_int8_irs_fp32_parent_on_a_cpu_without_int8_dot_products(
        tiny_generator_dir, tmp_path, monkeypatch, vnni):
    from compresskit import hardware

    for name in hardware.ISA_LIMIT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hardware, "isa", lambda flags=None: {"avx2": True, "avx512": vnni, "vnni": vnni,
                                                             "avx512_bf16": False, "amx": False})
    steps = [{"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 8}},
             {"bundle": {"generator": "auto", "validation_size": 8}}]
    logged: list[str] = []
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run",
                 on_event=lambda event: logged.append(event.message or ""))
    fp32_ir, int8_ir = (load_artifact(Path(step.path)) for step in result.steps[1:3])
    bundle = result.final
    chosen = int8_ir if vnni else fp32_ir
    assert (bundle.path / "generator.xml").read_bytes() == chosen.file(OPENVINO_XML).read_bytes()
    assert (bundle.path / "generator.bin").read_bytes() == chosen.file(OPENVINO_XML).with_suffix(".bin").read_bytes()
    spec = json.loads((bundle.path / BUNDLE_FILE).read_text())
    assert spec["generator"]["precision"] == ("int8" if vnni else "fp32")
    assert bundle.meta["generator_artifact"] == chosen.id
    assert any(f"generator auto: {'int8' if vnni else 'fp32'}" in line for line in logged)
    assert Bundle(bundle.path).generate(["cat face"]).shape == (1, 32, 32, 3)


def test_generator_auto_keeps_the_int8_ir_when_its_fp32_parent_is_not_in_the_run_folder(tmp_path, monkeypatch):
    from compresskit.artifact import Artifact
    from compresskit.passes import bundle as bundle_pass
    from compresskit.passes.base import PassContext
    from compresskit.passes.bundle import _generator

    monkeypatch.setattr(bundle_pass, "fast_int8", lambda: (False, "AVX2"))
    int8 = Artifact(tmp_path / "05-quantize_nncf-b", "b", "a", "openvino", {"pass": "quantize_nncf"}, {}, {})
    logged: list[str] = []
    ctx = PassContext(run_dir=tmp_path, log=logged.append)
    assert _generator(int8, ctx, "auto") == (int8, "int8")
    assert "is not in this run folder" in logged[-1]
    assert _generator(int8, ctx, "input") == (int8, "int8")


def test_a_shallower_text_encoder_is_distilled_on_the_train_captions_and_bundled(tiny_generator_dir, tmp_path):
    import onnx

    from compresskit.cache import cache_root
    from compresskit.passes.calibration import dataset_captions
    from compresskit.text.shallow import cut_encoder, encode_pooled, load_minilm

    steps = [{"export_onnx": {}}, {"bundle": {"validation_size": 16, "text_layers": 1, "text_steps": 40,
                                               "text_lr": 1e-3}}]
    bundle = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run").final
    spec = json.loads((bundle.path / BUNDLE_FILE).read_text())
    assert spec["text_encoder"]["layers"] == 1
    names = {node.name for node in onnx.load(str(bundle.path / "text_encoder.onnx")).graph.node}
    assert any("layer.0/" in n for n in names) and not any("layer.1/" in n for n in names), "one layer kept"
    vector = Bundle(bundle.path).embed(["red apple"])["text"]
    assert vector.shape == (1, 384) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
    # the cosine the pass reports is to the full MiniLM, on the val captions; distillation must have lifted it
    # above MiniLM merely cut after one layer
    tokenizer, full = load_minilm()
    val = dataset_captions(bundle.dataset, 16, 7, "val")
    cut_alone = float((encode_pooled(cut_encoder(full, 1), tokenizer, val) * encode_pooled(full, tokenizer, val))
                      .sum(1).mean())
    assert cut_alone + 0.1 < bundle.meta["text_cosine_vs_fp32"] < 1.0, (cut_alone, bundle.meta["text_cosine_vs_fp32"])
    # another run distilling the same captions with the same settings takes the cached encoder
    distilled = sorted((cache_root() / "text-encoder-shallow").iterdir())
    steps[1]["bundle"]["validation_size"] = 8  # another bundle step, the same encoder settings
    again = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "again").final
    assert sorted((cache_root() / "text-encoder-shallow").iterdir()) == distilled
    assert (again.path / "text_encoder.onnx").read_bytes() == (bundle.path / "text_encoder.onnx").read_bytes()


@pytest.mark.parametrize("damage", ["flip a byte of generator.bin", "truncate text_encoder.xml"])
def test_a_damaged_bundle_is_refused_in_one_line_not_drawn_with(bundled, tmp_path, damage):
    from tests.helpers import run_cli

    copy = tmp_path / "bundle"
    shutil.copytree(bundled[1].path, copy)
    if damage.startswith("flip"):
        data = bytearray((copy / "generator.bin").read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / "generator.bin").write_bytes(bytes(data))
        name = "generator.bin"
    else:
        text = (copy / "text_encoder.xml").read_text()
        (copy / "text_encoder.xml").write_text(text[: len(text) // 2])
        name = "text_encoder.xml"
    with pytest.raises(ArtifactError, match=f"bundle refused: .*{name} does not match its manifest checksum"):
        Bundle(copy)
    done = run_cli("generate", "red apple", "--model", str(copy), "-o", str(tmp_path / "g.png"))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert name in done.stderr and not (tmp_path / "g.png").exists()


def test_a_bundle_refuses_an_unknown_format_version(bundled, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundled[1].path, copy)
    spec = json.loads((copy / BUNDLE_FILE).read_text())
    (copy / BUNDLE_FILE).write_text(json.dumps({**spec, "format": "compresskit.bundle/99"}))
    with pytest.raises(ArtifactError, match="is not a compresskit.bundle/2 file"):
        Bundle(copy)
