"""End to end on a tiny generator: run a recipe, measure every candidate, write and compare reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from compresskit.bench.compare import compare
from compresskit.bench.measure import Candidate
from compresskit.bench.quality import measure_quality
from compresskit.bench.report import bench_run
from compresskit.bench.settings import QualitySettings
from compresskit.metrics.evaluate import eval_set
from compresskit.models import create_generator, save_generator
from compresskit.recipe import parse_recipe
from compresskit.runner import input_artifact, run
from tests.helpers import run_cli

SHAPES = {"name": "shapes", "n": 600, "size": 32, "seed": 5}  # 60 eval captions: enough for KID
FAST_BENCH = {"speed": {"threads": [1], "batch_sizes": [1, 4], "warmup": 1, "rounds": 2, "per_round": 3},
              "quality": {"batch_size": 16}}


@pytest.fixture(scope="module")
def shapes_generator_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-shapes") / "generator"
    return save_generator(folder, create_generator(ngf=4, text_hidden=16, fuse_hidden=8), meta={"data": SHAPES})


def _recipe(model: Path, steps: list, **extra) -> dict:
    return {"input": {"model": str(model)}, "threads": 1, "steps": steps, "bench": FAST_BENCH, **extra}


@pytest.fixture(scope="module")
def measured_run(shapes_generator_dir, tmp_path_factory) -> tuple[Path, dict]:
    raw = _recipe(shapes_generator_dir, [{"sanitize": {}}, {"export_onnx": {}}, {"export_openvino": {}}],
                  name="tiny-export", gates=[
                      {"metric": "psnr_vs_teacher", "goal": "threshold", "value": 40},
                      {"metric": "speedup_vs_baseline", "goal": "threshold", "value": 1000},
                  ])
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-export"
    run(parse_recipe(raw, "tiny-export.yaml"), run_dir)
    return run_dir, bench_run(run_dir)


def test_report_measures_every_candidate_with_units_directions_and_counts(measured_run):
    run_dir, report = measured_run
    assert json.loads((run_dir / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    assert report["schema_version"] == 1
    names = [c["name"] for c in report["candidates"]]
    assert names == ["baseline", "export_onnx", "export_openvino"], "sanitize runs like its input: not measured"
    assert [c["backend"] for c in report["candidates"]] == ["torch", "onnxruntime", "openvino"]
    speed = ["latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "throughput_ips", "first_inference_ms",
             "peak_rss_mb", "size_mb", "params", "macs", "e2e_latency_ms_p50", "speedup_vs_baseline"]
    for c in report["candidates"]:
        m = c["metrics"]
        for name in speed + ["kid", "fid", "attr_accuracy"]:
            assert {"value", "unit", "direction"} <= set(m[name]), (c["name"], name)
        assert m["latency_ms_p50"]["value"] <= m["latency_ms_p90"]["value"] <= m["latency_ms_p99"]["value"]
        assert m["latency_ms_p50"]["n"] == 6 and m["kid"]["n"] == 60
        assert m["latency_ms_p50"]["spread"]["iqr_ms"] >= 0 and m["kid"]["spread"]["std"] > 0
        assert m["throughput_ips"]["batch"] == 4 and m["throughput_ips"]["value"] > 0
        assert m["e2e_latency_ms_p50"]["value"] > 0 and m["peak_rss_mb"]["value"] > 50
        assert m["params"]["value"] == report["candidates"][0]["metrics"]["params"]["value"], "an export keeps the weights"
    base, onnx, ov = (c["metrics"] for c in report["candidates"])
    assert base["speedup_vs_baseline"]["value"] == 1.0 and "psnr_vs_teacher" not in base
    for exported in (onnx, ov):  # same weights in another runtime: near-identical images, same quality
        assert exported["psnr_vs_teacher"]["value"] > 40 and exported["perceptual_vs_teacher"]["value"] < 1e-3
        assert exported["kid"]["value"] == pytest.approx(base["kid"]["value"], abs=2e-3)
    assert onnx["size_mb"]["value"] > 0.9 * base["size_mb"]["value"]


def test_report_json_validates_against_its_schema_and_a_broken_one_does_not(measured_run, tmp_path):
    from compresskit.bench.compare import load_report
    from compresskit.bench.schema import ReportRecord
    from compresskit.errors import ArtifactError

    run_dir, report = measured_run
    ReportRecord.model_validate(json.loads((run_dir / "report.json").read_text()))
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
    assert set(report["pareto"]["front"]) <= {"baseline", "export_onnx", "export_openvino"} and report["pareto"]["front"]
    passed = [g["passed"] for g in report["gates"]]
    assert passed == [True, False] and report["verdict"] == "fail"
    md = (run_dir / "report.md").read_text()
    assert "| export_openvino | openvino |" in md and "**Verdict: fail**" in md


def test_gate_cli_reads_the_recipe_gates_of_a_report(measured_run):
    run_dir, _ = measured_run
    done = run_cli("gate", str(run_dir / "report.json"))
    assert done.returncode == 1 and "speedup_vs_baseline" in done.stdout and "PASS" in done.stdout


def test_nan_output_fails_the_candidate_quality_instead_of_scoring(shapes_generator_dir, tmp_path):
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
    candidates = [Candidate("baseline", baseline, 0), Candidate("broken", input_artifact(spec, tmp_path / "a"), 1)]
    scores, errors, samples = measure_quality(candidates, eval_set(SHAPES), QualitySettings(batch_size=32), 1,
                                              ["a large red circle at the center"])
    assert "broken" not in scores and "NaN" in errors["broken"]
    assert samples["broken"].max() == 0 and samples["baseline"].shape == (1, 32, 32, 3)
    assert scores["baseline"]["attr_accuracy"]["n"] == 60


def test_compare_writes_one_table_plot_grid_and_self_contained_html(measured_run, shapes_generator_dir, tmp_path):
    run_dir, _ = measured_run
    other = tmp_path / "tiny-onnx"
    raw = _recipe(shapes_generator_dir, [{"export_onnx": {}}], name="tiny-onnx",
                  bench={**FAST_BENCH, "speed": {**FAST_BENCH["speed"], "probe": False}})
    run(parse_recipe(raw, "tiny-onnx.yaml"), other)
    bench_run(other)
    result = compare([run_dir, other], tmp_path / "cmp")
    labels = [c["label"] for c in result["candidates"]]
    assert labels == ["tiny-export/baseline", "tiny-export/export_onnx", "tiny-export/export_openvino",
                      "tiny-onnx/export_onnx"], "the shared baseline appears once"
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
