"""End to end on a tiny generator: run a recipe, measure every candidate, write and compare reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from compresskit.artifact import load_artifact
from compresskit.bench.compare import compare
from compresskit.bench.measure import Candidate
from compresskit.bench.quality import measure_quality
from compresskit.bench.report import bench_run
from compresskit.bench.settings import QualitySettings
from compresskit.hardware import native_bf16
from compresskit.metrics.evaluate import eval_set
from compresskit.models import create_generator, save_model
from compresskit.recipe import parse_recipe
from compresskit.runner import input_artifact, run
from tests.helpers import run_cli

SHAPES = {"name": "shapes", "n": 600, "size": 32, "seed": 5}  # 93 eval captions: enough for KID
N_EVAL = 93
FAST_BENCH = {"speed": {"threads": [1], "batch_sizes": [1, 4], "warmup": 1, "warmup_s": 0, "rounds": 2, "per_round": 3,
                        "peak_calls": 5},
              "quality": {"batch_size": 16, "diversity_captions": 12}}


@pytest.fixture(scope="module")
def shapes_generator_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-shapes") / "generator"
    return save_model(folder, create_generator(ngf=4, text_hidden=16, fuse_hidden=8), meta={"data": SHAPES})


def _recipe(model: Path, steps: list, **extra) -> dict:
    return {"input": {"model": str(model)}, "threads": 1, "steps": steps, "bench": FAST_BENCH, **extra}


@pytest.fixture(scope="module")
def measured_run(shapes_generator_dir, tmp_path_factory) -> tuple[Path, dict]:
    raw = _recipe(shapes_generator_dir, [{"sanitize": {}}, {"export_onnx": {}}, {"export_openvino": {}}],
                  name="tiny-export", gates=[
                      {"metric": "psnr_vs_teacher", "goal": "threshold", "value": 40},
                      {"metric": "speedup_vs_baseline", "goal": "threshold", "value": 1000},
                      # an export keeps the teacher's weights, so it keeps (about) all of its diversity
                      {"metric": "diversity", "goal": "percent_max_degradation", "value": 10},
                  ])
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-export"
    run(parse_recipe(raw, "tiny-export.yaml"), run_dir)
    return run_dir, bench_run(run_dir).to_json()


REFERENCES = ["teacher_onnx", "teacher_openvino", "teacher_int8"]


def test_report_measures_every_candidate_with_units_directions_and_counts(measured_run):
    run_dir, report = measured_run
    assert json.loads((run_dir / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    assert report["schema_version"] == 2
    phases = report["bench_phase_seconds"]
    assert set(phases) == {"speed", "quality", "size_and_footprint", "peak"} and all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= report["bench_seconds"] + 0.5, "where the bench's time went, within its total"
    names = [c["name"] for c in report["candidates"]]
    assert names == ["baseline", *REFERENCES, "export_onnx", "export_openvino"], "sanitize runs like its input: not measured"
    assert [c["role"] for c in report["candidates"]] == ["baseline"] + ["reference"] * 3 + ["candidate"] * 2
    assert [c["backend"] for c in report["candidates"]] == ["torch", "onnxruntime", "openvino", "openvino",
                                                            "onnxruntime", "openvino"]
    speed = ["latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "throughput_ips", "first_inference_ms",
             "peak_rss_mb", "size_mb", "params", "macs", "e2e_latency_ms_p50", "e2e_latency_ms_p90",
             "e2e_speedup_vs_baseline", "speedup_vs_baseline",
             "speedup_vs_exported_teacher", "speedup_vs_teacher_int8"]
    for c in report["candidates"]:
        m = c["metrics"]
        for name in speed + ["kid", "fid", "attr_accuracy", "attr_accuracy_seen", "attr_accuracy_unseen", "diversity"]:
            assert {"value", "unit", "direction"} <= set(m[name]), (c["name"], name)
        assert m["latency_ms_p50"]["value"] <= m["latency_ms_p90"]["value"] <= m["latency_ms_p99"]["value"]
        assert m["latency_ms_p50"]["n"] == 6 and m["kid"]["n"] == N_EVAL
        assert m["latency_ms_p50"]["spread"]["iqr_ms"] >= 0 and m["kid"]["stderr"] == m["kid"]["std"] > 0
        objects = m["attr_accuracy"]["objects"]
        assert m["attr_accuracy"]["stderr"] == pytest.approx(
            (m["attr_accuracy"]["value"] * (1 - m["attr_accuracy"]["value"]) / objects) ** 0.5)
        assert m["attr_accuracy_seen"]["n"] + m["attr_accuracy_unseen"]["n"] == N_EVAL
        assert m["diversity"]["samples_per_caption"] == 8 and m["diversity"]["n"] == 12 and m["diversity"]["value"] > 0
        assert m["throughput_ips"]["batch"] == 4 and m["throughput_ips"]["value"] > 0
        assert 0 < m["e2e_latency_ms_p50"]["value"] <= m["e2e_latency_ms_p90"]["value"]
        assert m["peak_rss_mb"]["value"] > 50
        assert m["e2e_speedup_vs_baseline"]["value"] == pytest.approx(  # over the teacher pipeline, same run
            report["candidates"][0]["metrics"]["e2e_latency_ms_p50"]["value"] / m["e2e_latency_ms_p50"]["value"])
        assert m["params"]["value"] == report["candidates"][0]["metrics"]["params"]["value"], "an export keeps the weights"
    base, teacher_onnx, teacher_ov, teacher_int8, onnx, ov = (c["metrics"] for c in report["candidates"])
    assert base["speedup_vs_baseline"]["value"] == 1.0 and "psnr_vs_teacher" not in base
    for m in (onnx, ov, teacher_int8):  # every speedup carries its bootstrap interval around it
        for name in ("speedup_vs_baseline", "speedup_vs_teacher_int8", "e2e_speedup_vs_baseline"):
            low, high = m[name]["interval"]
            assert low <= m[name]["value"] <= high and "bootstrap" in m[name]["how"], name
    # each speedup is the ratio of two p50s of this run, over the reference its name says
    for m, exported_teacher in ((onnx, teacher_onnx), (ov, teacher_ov), (base, base)):
        assert m["speedup_vs_exported_teacher"]["value"] == pytest.approx(
            exported_teacher["latency_ms_p50"]["value"] / m["latency_ms_p50"]["value"])
        assert m["speedup_vs_teacher_int8"]["value"] == pytest.approx(
            teacher_int8["latency_ms_p50"]["value"] / m["latency_ms_p50"]["value"])
    assert teacher_int8["psnr_vs_teacher"]["value"] < teacher_ov["psnr_vs_teacher"]["value"], "INT8 is lossy"
    for exported in (onnx, ov):  # same weights in another runtime: near-identical images, same quality
        assert exported["psnr_vs_teacher"]["value"] > 40 and exported["perceptual_vs_teacher"]["value"] < 1e-3
        assert exported["kid"]["value"] == pytest.approx(base["kid"]["value"], abs=2e-3)
    assert onnx["size_mb"]["value"] > 0.9 * base["size_mb"]["value"]


def test_each_candidate_is_set_beside_the_peak_of_its_own_runtime_and_precision(measured_run):
    _, report = measured_run
    kinds = {c["name"]: c["metrics"]["peak_gmacs_per_s"]["kind"] for c in report["candidates"]}
    assert kinds == {"baseline": "torch/f32", "teacher_onnx": "onnxruntime/f32", "teacher_openvino": "openvino/f32",
                     "teacher_int8": "openvino/int8", "export_onnx": "onnxruntime/f32", "export_openvino": "openvino/f32"}
    for c in report["candidates"]:
        m = c["metrics"]
        assert m["gmacs_per_s"]["value"] == pytest.approx(m["macs"]["value"] / m["latency_ms_p50"]["value"] / 1e6)
        assert m["share_of_peak"]["value"] == pytest.approx(m["gmacs_per_s"]["value"] / m["peak_gmacs_per_s"]["value"])
        # a generator of a few MMACs cannot keep the vector units busy the way one 604 MMAC convolution does
        assert 0 < m["share_of_peak"]["value"] < 0.5, c["name"]
    peaks = {kinds[c["name"]]: c["metrics"]["peak_gmacs_per_s"]["value"] for c in report["candidates"]}
    assert peaks["openvino/int8"] > peaks["openvino/f32"], "VNNI INT8 does more MACs per cycle than fp32"


def test_report_json_validates_against_its_schema_and_a_broken_one_does_not(measured_run, tmp_path):
    from compresskit.bench.schema import Report, load_report
    from compresskit.errors import ArtifactError

    run_dir, report = measured_run
    typed = Report.load(run_dir)
    assert typed.to_json()["candidates"] == report["candidates"], "the file reads back as the report it was"
    assert typed.candidate("final").name == "export_openvino" and typed.candidate("baseline").role == "baseline"
    assert "| candidate |" in typed.table().splitlines()[0]
    with pytest.raises(KeyError, match="no candidate 'nope'"):
        typed.candidate("nope")
    broken = json.loads((run_dir / "report.json").read_text())
    broken["candidates"][1]["metrics"]["kid"]["direction"] = "sideways"
    (tmp_path / "report.json").write_text(json.dumps(broken))
    with pytest.raises(ArtifactError, match="candidates.1.metrics.kid.direction"):
        load_report(tmp_path)


def test_runtimes_agree_with_each_other_on_the_tiny_model(measured_run):
    from compresskit.artifact import load_artifact
    from compresskit.passes.parity import parity_inputs
    from compresskit.runtimes import load_runtime

    _, report = measured_run
    artifacts = [load_artifact(Path(c["path"])) for c in report["candidates"]]
    inputs = parity_inputs(artifacts[0].io, 3, 11)
    images = {a.format: load_runtime(a, threads=1)(inputs) for a in artifacts}
    assert set(images) == {"torch", "onnx", "openvino"}
    for name in ("onnx", "openvino"):
        assert images[name].shape == images["torch"].shape == (3, 3, 32, 32)
        assert abs(images[name] - images["torch"]).max() < 1e-4, name


def test_report_files_front_and_gates(measured_run):
    run_dir, report = measured_run
    for name in ("report.md", "pareto.png", "samples.png", "samples.npz"):
        assert (run_dir / name).stat().st_size > 200, name
    assert set(report["pareto"]["front"]) <= {"baseline", *REFERENCES, "export_onnx", "export_openvino"}
    assert report["pareto"]["front"]
    passed = [g["passed"] for g in report["gates"]]
    assert passed == [True, False, True] and report["verdict"] == "fail"
    diversity = report["gates"][2]
    assert diversity["metric"] == "diversity" and diversity["baseline"] > 0
    md = (run_dir / "report.md").read_text()
    assert "| export_openvino | openvino |" in md and "**Verdict: fail**" in md
    frontier = report["frontier"]  # the tiny shapes model: attribute accuracy stands for text alignment
    assert frontier["alignment_metric"] == "attr_accuracy" and (run_dir / "frontier.png").stat().st_size > 200
    baseline = next(p for p in frontier["points"] if p["name"] == "baseline")
    assert baseline["inside"], "the teacher keeps its own quality"
    assert "Quality-held frontier" in md


def test_gate_cli_reads_the_recipe_gates_of_a_report(measured_run):
    run_dir, _ = measured_run
    done = run_cli("gate", str(run_dir / "report.json"))
    assert done.returncode == 1 and "speedup_vs_baseline" in done.stdout and "PASS" in done.stdout


def test_nan_output_fails_the_candidate_quality_instead_of_scoring(shapes_generator_dir, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from compresskit.recipe import InputSpec
    from tests.passes.user_generators import ConvTransposeGenerator

    baseline = input_artifact(str(shapes_generator_dir), tmp_path / "a")
    z_dim = baseline.io["inputs"]["z"]["shape"][1]
    broken = ConvTransposeGenerator(z_dim=z_dim, width=32).eval()
    with torch.no_grad():  # finite weights (NaN weights are refused on load) whose eval-mode output is NaN
        broken.ups[0][1].running_var.fill_(-1.0)
    save_file(broken.state_dict(), str(tmp_path / "broken.safetensors"))
    spec = InputSpec(factory="tests.passes.user_generators:conv_transpose", kwargs={"width": 32, "z_dim": z_dim},
                     weights=str(tmp_path / "broken.safetensors"), z_dim=z_dim)
    # a run refuses such a model up front (prove_spec); here it stands for an artifact that turns NaN later
    monkeypatch.setattr("compresskit.runner.prove_spec", lambda model, spec: None)
    candidates = [Candidate("baseline", baseline, 0), Candidate("broken", input_artifact(spec, tmp_path / "a"), 1)]
    scores, errors, samples = measure_quality(candidates, eval_set(SHAPES), QualitySettings(batch_size=32), 1,
                                              ["a large red circle at the center"])
    assert "broken" not in scores and "NaN" in errors["broken"]
    assert samples["broken"].max() == 0 and samples["baseline"].shape == (1, 32, 32, 3)
    assert scores["baseline"]["attr_accuracy"]["n"] == N_EVAL


def test_compare_writes_one_table_plot_grid_and_self_contained_html(measured_run, shapes_generator_dir, tmp_path):
    run_dir, _ = measured_run
    other = tmp_path / "tiny-onnx"
    raw = _recipe(shapes_generator_dir, [{"export_onnx": {}}], name="tiny-onnx",
                  bench={**FAST_BENCH, "speed": {**FAST_BENCH["speed"], "probe": False}})
    run(parse_recipe(raw, "tiny-onnx.yaml"), other)
    bench_run(other)
    result = compare([run_dir, other], tmp_path / "cmp")
    labels = [c["label"] for c in result["candidates"]]
    assert labels == ["tiny-export/baseline", *(f"tiny-export/{r}" for r in REFERENCES), "tiny-export/export_onnx",
                      "tiny-export/export_openvino", "tiny-onnx/export_onnx"], "the shared baseline and references appear once"
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "http" not in page.replace("http-equiv", "")
    assert "tiny-onnx/export_onnx" in page
    done = run_cli("compare", str(run_dir), str(tmp_path / "missing"), "-o", str(tmp_path / "cmp2"))
    assert done.returncode == 2 and "no report.json" in done.stderr


def test_recipe_bench_and_gate_names_are_checked_before_any_compute(shapes_generator_dir, tmp_path):
    from compresskit.errors import RecipeError

    bad = _recipe(shapes_generator_dir, [{"export_onnx": {}}], gates=[
        {"metric": "kid", "goal": "threshold", "value": 1, "candidate": "export_onxx"}])
    with pytest.raises(RecipeError, match="did you mean 'export_onnx'"):
        parse_recipe(bad, "r.yaml")
    bad = _recipe(shapes_generator_dir, [{"export_onnx": {}}], gates=[{"metric": "kidd", "goal": "threshold", "value": 1}])
    with pytest.raises(RecipeError, match="did you mean 'kid'"):
        parse_recipe(bad, "r.yaml")
    steps = [{"export_onnx": {}}, {"export_openvino": {}}]
    bad = _recipe(shapes_generator_dir, steps, bench={"speed": {"bf16": ["export_openvno"]}})
    with pytest.raises(RecipeError, match=r"bench.speed.bf16.0: .*did you mean 'export_openvino'"):
        parse_recipe(bad, "r.yaml")
    fine = _recipe(shapes_generator_dir, steps, bench={"speed": {"bf16": ["final"]}}, gates=[
        {"metric": "speedup_vs_teacher_int8", "goal": "threshold", "value": 1, "candidate": "teacher_int8"},
        {"metric": "kid", "goal": "threshold", "value": 1, "candidate": "final@bf16"},
        {"metric": "kid", "goal": "threshold", "value": 1, "candidate": "teacher_openvino@bf16"}])
    assert len(parse_recipe(fine, "r.yaml").gates) == 3
    bad = _recipe(shapes_generator_dir, steps, gates=[{"metric": "kid", "goal": "threshold", "value": 1,
                                                       "candidate": "export_openvino@bf16"}])
    with pytest.raises(RecipeError, match="gates.0.candidate: unknown candidate 'export_openvino@bf16'"):
        parse_recipe(bad, "r.yaml")  # bf16 variants exist only where bench.speed.bf16 asks for them
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(_recipe(shapes_generator_dir, [{"export_onnx": {}}],
                                                            bench={"speed": {"threds": [1]}})))
    done = run_cli("run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "never"))
    assert done.returncode == 2 and "bench.speed.threds" in done.stderr and not (tmp_path / "never").exists()


def test_a_failed_step_exits_1_and_its_report_names_the_step(shapes_generator_dir, tmp_path):
    raw = _recipe(shapes_generator_dir, [{"sanitize": {}}, {"export_onnx": {"tolerance": 1e-20}}], name="broken",
                  gates=[{"metric": "kid", "goal": "threshold", "value": 10}])
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    done = run_cli("run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"))
    assert done.returncode == 1 and "tolerance 1e-20" in done.stderr and "Traceback" not in done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "failed" and report["failed_step"] == 2 and report["verdict"] == "fail"
    assert [g["passed"] for g in report["gates"]] == [False], "a gate on a failed run fails closed"
    assert "Run failed at step 2" in (tmp_path / "run" / "report.md").read_text()


def test_bench_of_an_unfinished_run_folder_is_one_line_exit_2(measured_run, tmp_path):
    run_dir, _ = measured_run
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "recipe.yaml").write_text((run_dir / "recipe.yaml").read_text())
    done = run_cli("bench", str(tmp_path / "half"))
    assert done.returncode == 2 and "has no run.json" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("bench", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "not a run folder" in done.stderr


def test_a_moved_run_folder_is_measured_from_its_new_place(measured_run, tmp_path):
    import shutil

    from compresskit.bench.report import run_candidates
    from compresskit.bench.settings import BenchSettings

    run_dir, _ = measured_run
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run_dir, moved)
    candidates = run_candidates(moved, BenchSettings())
    assert [c.name for c in candidates] == ["baseline", "export_onnx", "export_openvino"]
    assert all(moved in c.artifact.path.parents for c in candidates)


def test_every_runtime_setting_is_in_the_report_and_each_runs_as_deployed(measured_run):
    _, report = measured_run
    by_name = {c["name"]: c["runtime_settings"]["1"] for c in report["candidates"]}
    latency, throughput = by_name["export_openvino"]["batch 1 (latency, e2e)"], by_name["export_openvino"]["batch 4 (throughput)"]
    assert latency["PERFORMANCE_HINT"] == "LATENCY" and latency["INFERENCE_NUM_THREADS"] == 1
    assert latency["INFERENCE_PRECISION_HINT"] == "f32" and latency["static_shapes"] == {"z": "[1,100]", "text": "[1,384]"}
    assert throughput["PERFORMANCE_HINT"] == "THROUGHPUT" and throughput["static_shapes"]["z"] == "[4,100]"
    onnx = by_name["export_onnx"]["batch 1 (latency, e2e)"]
    assert onnx["allow_spinning"] is False and onnx["intra_op_num_threads"] == 1
    assert by_name["baseline"]["batch 1 (latency, e2e)"]["mode"] == "eager fp32, inference_mode"
    assert "Runtime settings" in (Path(report["run_dir"]) / "report.md").read_text()


def test_gate_refuses_a_report_its_run_folder_no_longer_matches(measured_run, shapes_generator_dir, tmp_path):
    import shutil

    run_dir, _ = measured_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert run_cli("gate", str(copy / "report.json")).returncode == 1, "current report: gated (one gate fails)"
    raw = _recipe(shapes_generator_dir, [{"sanitize": {}}, {"export_onnx": {"opset": 18}}], name="tiny-export")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert run_cli("run", str(tmp_path / "r.yaml"), "--out", str(copy), "--no-bench").returncode == 0
    done = run_cli("gate", str(copy / "report.json"))
    assert done.returncode == 2 and "is stale" in done.stderr and "compresskit bench" in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr


@pytest.fixture(scope="module")
def bf16_run(shapes_generator_dir, tmp_path_factory) -> tuple[Path, dict]:
    """bf16 variants, the benchmark_app cross-check, and a measured subset that leaves out the last step."""
    speed = {**FAST_BENCH["speed"], "batch_sizes": [1], "probe": False, "bf16": ["export_openvino"],
             "crosscheck": True, "crosscheck_seconds": 1}
    raw = _recipe(shapes_generator_dir, [{"export_onnx": {}}, {"export_openvino": {}}, {"quantize_nncf": {"subset_size": 16}}],
                  name="tiny-bf16", bench={**FAST_BENCH, "speed": speed, "candidates": ["export_openvino"]},
                  gates=[{"metric": "kid", "goal": "threshold", "value": 100}])
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-bf16"
    run(parse_recipe(raw, "tiny-bf16.yaml"), run_dir)
    return run_dir, bench_run(run_dir).to_json()


def test_bf16_is_its_own_candidate_with_its_own_reference_and_quality(bf16_run):
    import openvino as ov

    _, report = bf16_run
    by_name = {c["name"]: c for c in report["candidates"]}
    if not native_bf16("cpu")[0]:  # an AVX2-only CPU: the variants are reported not applicable, never timed
        assert list(by_name) == ["baseline", *REFERENCES, "export_openvino"]
        assert set(report["not_applicable"]) == {"teacher_openvino@bf16", "export_openvino@bf16"}
        assert all("no native bf16" in why for why in report["not_applicable"].values())
        return
    assert list(by_name) == ["baseline", *REFERENCES, "export_openvino", "teacher_openvino@bf16", "export_openvino@bf16"]
    bf16 = by_name["export_openvino@bf16"]
    assert bf16["precision"] == "bf16" and by_name["export_openvino"]["precision"] == "f32"
    assert bf16["metrics"]["speedup_vs_exported_teacher"]["reference"] == "teacher_openvino@bf16"
    assert "kid" in bf16["metrics"] and "psnr_vs_teacher" in bf16["metrics"]
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert bf16["runtime_settings"]["1"]["batch 1 (latency, e2e)"]["INFERENCE_PRECISION_HINT"] == "bf16"
        assert bf16["metrics"]["psnr_vs_teacher"]["value"] < by_name["export_openvino"]["metrics"]["psnr_vs_teacher"]["value"]


def test_benchmark_app_cross_checks_every_openvino_candidate(bf16_run):
    _, report = bf16_run
    for c in report["candidates"]:
        found = c["metrics"].get("benchmark_app_ms_p50")
        assert (found is not None) == (c["format"] == "openvino"), c["name"]
        if found:
            assert found["value"] > 0 and "-nthreads 1" in found["command"] and "-nstreams 1" in found["command"]
            assert found["ratio"] == pytest.approx(found["compresskit_alone_ms_p50"] / found["value"], rel=0.01)
            assert ("-infer_precision bf16" in found["command"]) == c["name"].endswith("@bf16")


def test_end_to_end_benchmark_app_probe_and_quality_only_for_the_candidates_named(bf16_run, tmp_path):
    import shutil

    from compresskit.bench.settings import BenchSettings
    from compresskit.errors import ConfigError

    run_dir = tmp_path / "run"
    shutil.copytree(bf16_run[0], run_dir)
    speed = {**FAST_BENCH["speed"], "batch_sizes": [1], "probe": ["final"], "peak": False, "e2e": ["teacher_int8"],
             "crosscheck": ["teacher_int8"], "crosscheck_seconds": 1}
    quality = {**FAST_BENCH["quality"], "candidates": ["teacher_int8"]}
    settings = BenchSettings.model_validate({**FAST_BENCH, "speed": speed, "quality": quality,
                                             "candidates": ["export_openvino", "quantize_nncf"]})
    report = bench_run(run_dir, settings).to_json()

    def having(metric: str) -> set[str]:
        return {c["name"] for c in report["candidates"] if metric in c["metrics"]}

    assert having("e2e_speedup_vs_baseline") == {"baseline", "teacher_int8"}  # the baseline: every e2e's reference
    assert having("benchmark_app_ms_p50") == {"teacher_int8"}
    assert having("kid") == {"baseline", "teacher_int8"}  # the baseline: the reference of every *_vs_teacher
    assert having("first_inference_ms") == {"quantize_nncf"}  # "final": the recipe's last step
    assert all("latency_ms_p50" in c["metrics"] for c in report["candidates"])
    not_ir = BenchSettings.model_validate({**FAST_BENCH, "speed": {**speed, "crosscheck": ["teacher_onnx"]},
                                           "candidates": ["export_openvino"]})
    with pytest.raises(ConfigError, match="crosscheck names 'teacher_onnx', which is not an OpenVINO candidate"):
        bench_run(run_dir, not_ir)


def test_a_recipe_naming_an_unknown_candidate_for_end_to_end_timing_is_refused(shapes_generator_dir):
    from compresskit.errors import RecipeError

    bench = {**FAST_BENCH, "speed": {**FAST_BENCH["speed"], "e2e": ["export_onxx"]}}
    raw = _recipe(shapes_generator_dir, [{"export_onnx": {}}], name="tiny-e2e", bench=bench)
    with pytest.raises(RecipeError, match=r"bench.speed.e2e.0: unknown candidate 'export_onxx'; did you mean 'export_onnx'"):
        parse_recipe(raw, "tiny-e2e.yaml")


def test_final_means_the_last_step_even_when_only_an_earlier_one_was_measured(bf16_run):
    _, report = bf16_run
    assert report["final_step"] == "quantize_nncf" and not any(c["final"] for c in report["candidates"])
    gate = report["gates"][0]
    assert not gate["passed"] and "last step (quantize_nncf) was not measured" in gate["reason"]


def test_a_bf16_candidate_on_a_cpu_without_bf16_is_not_applicable_and_a_gate_on_it_says_why(measured_run):
    from compresskit.bench.gate import GateSpec, evaluate_gates
    from compresskit.bench.measure import Candidate
    from compresskit.bench.report import with_bf16

    _, report = measured_run
    ov = next(c for c in report["candidates"] if c["format"] == "openvino" and c["role"] == "candidate")
    candidate = Candidate(ov["name"], load_artifact(Path(ov["path"])), ov["step"])
    kept, skipped = with_bf16([candidate], [ov["name"]], ov["name"], native=(False, "AVX2"))
    assert kept == [candidate]
    assert skipped == {f"{ov['name']}@bf16": "not applicable: this CPU has no native bf16 (AVX2); OpenVINO would "
                                             "emulate it, so it was not timed"}
    gate = GateSpec.model_validate({"metric": "latency_ms_p50", "goal": "threshold", "value": 1,
                                    "candidate": f"{ov['name']}@bf16"})
    (result,) = evaluate_gates({"candidates": report["candidates"], "not_applicable": skipped}, [gate])
    assert not result.passed and "not applicable: this CPU has no native bf16 (AVX2)" in result.reason
    both, none = with_bf16([candidate], [ov["name"]], ov["name"], native=(True, "AVX512-BF16"))
    assert [c.name for c in both] == [ov["name"], f"{ov['name']}@bf16"] and none == {}


def test_the_report_names_the_machine_and_what_each_openvino_candidate_executed(measured_run):
    run_dir, report = measured_run
    env = report["environment"]
    assert env["threads_used"] == report["headline_threads"] and env["isa_label"] and "FP32" in env["openvino_capabilities"]
    assert isinstance(env["native_bf16"], bool) and set(env["isa"]) >= {"avx2", "avx512", "vnni", "avx512_bf16", "amx"}
    md = (run_dir / "report.md").read_text()
    assert f"ISA {env['isa_label']}" in md and "native bf16:" in md and "OpenVINO CPU capabilities:" in md
    for c in report["candidates"]:
        if c["format"] == "openvino":
            applied = c["runtime_settings"][str(report["headline_threads"])]["batch 1 (latency, e2e)"]
            assert sum(applied["executed_precisions"].values()) > 0, c["name"]
            assert f"- {c['name']}: " in md.split("## Executed precision")[1]
    int8 = next(c for c in report["candidates"] if c["name"] == "teacher_int8")
    executed = int8["runtime_settings"][str(report["headline_threads"])]["batch 1 (latency, e2e)"]["executed_precisions"]
    assert executed.get("u8", 0) + executed.get("i8", 0) > 0, "an INT8 model executes int8 layers, read back"
