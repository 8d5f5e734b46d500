"""The library's doors end to end on tiny models: ``compresskit.run(dict)``, ``compresskit.compress(nn.Module)``,
``bench`` and ``gate``, each returning the typed Report that report.json holds."""

from __future__ import annotations

import json

import pytest
import torch

import compresskit
from compresskit.models import create_generator
from tests.passes import user_generators

SHAPES = {"name": "shapes", "n": 600, "size": 32, "seed": 5}
FAST_BENCH = {"speed": {"threads": [1], "batch_sizes": [1], "warmup": 1, "warmup_s": 0, "rounds": 2, "per_round": 3,
                        "peak": False, "exported_teacher": False},
              "quality": {"batch_size": 16, "diversity_captions": 8}}
GATES = [{"metric": "latency_ms_p50", "goal": "threshold", "value": 1e6},  # passes: under 1,000 s a call
         {"metric": "speedup_vs_baseline", "goal": "threshold", "value": 1e6}]  # fails: a million times faster


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    return create_generator(ngf=4, text_hidden=16, fuse_hidden=8)


def test_run_takes_a_dict_and_returns_the_typed_report_written_to_disk(tiny, tmp_path):
    folder = compresskit.save_model(tmp_path / "teacher", tiny, meta={"data": SHAPES})
    recipe = {"name": "lib", "input": {"model": str(folder)}, "threads": 1, "steps": [{"export_onnx": {}}],
              "bench": FAST_BENCH, "gates": GATES}
    events: list[compresskit.Event] = []
    with pytest.raises(compresskit.GateFailed, match="1 of 2 gates failed: final speedup_vs_baseline") as caught:
        compresskit.run(recipe, tmp_path / "run", progress=events.append)
    report = caught.value.report
    assert isinstance(report, compresskit.Report) and report.verdict == "fail"
    assert [g.passed for g in report.gates] == [True, False] and report.failed_gates[0].metric == "speedup_vs_baseline"
    final = report.candidate("final")
    assert final.name == "export_onnx" and final.format == "onnx" and final.value("latency_ms_p50") > 0
    assert final.metrics["kid"].direction == "lower" and final.metrics["kid"].n == 93
    assert report.candidate("baseline").role == "baseline"
    assert [e.kind for e in events if e.kind in ("start", "done")] == ["start", "done"]
    done = next(e for e in events if e.kind == "done")
    assert done.record.name == "export_onnx" and not done.record.cached
    assert any(e.kind == "log" and "quality of export_onnx" in (e.message or "") for e in events), "bench phases too"
    assert "step 1 export_onnx" in (tmp_path / "run" / "run.log").read_text(), "the run's log names each step"
    on_disk = compresskit.Report.load(tmp_path / "run")
    assert on_disk.to_json() == json.loads((tmp_path / "run" / "report.json").read_text()) == report.to_json()

    timed = compresskit.time_artifact(tmp_path / "run" / "final", threads=1, rounds=2, per_round=3, warmup=1)
    assert timed["format"] == "onnx" and timed["n"] == 6 and 0 < timed["latency_ms_p50"] <= timed["latency_ms_p90"]

    # the same run, gates not raised: steps and measurement reused, the verdict returned
    again = compresskit.run(recipe, tmp_path / "run", gate=False)
    assert again.verdict == "fail" and [s["status"] for s in again.steps] == ["cached"]
    # measured again on the val split (as when tuning), then re-gated with a looser gate list, from the file
    tuned = compresskit.measure(tmp_path / "run", split="val", n=40, candidates=["export_onnx"])
    assert tuned.quality_n == 40 and tuned.settings["quality"]["split"] == "val"
    assert "attr_accuracy" in tuned.candidate("final").metrics
    loose = compresskit.gate(tmp_path / "run", [GATES[0]])
    assert loose.verdict == "pass" and len(loose.gates) == 1


def test_compress_takes_an_in_memory_generator(tiny, tmp_path):
    report = compresskit.compress(tiny, ["sanitize", {"export_onnx": {"opset": 17}}], out=tmp_path / "mine",
                                  data=SHAPES, threads=1, bench=FAST_BENCH,
                                  gates=[{"metric": "kid", "goal": "max_degradation", "value": 0.5}])
    assert report.recipe["name"] == "mine" and report.verdict == "pass", report.failed_gates
    assert report.candidate("final").name == "export_onnx"
    loaded = compresskit.load_model(tmp_path / "mine" / "input-model")
    for a, b in zip(loaded.state_dict().values(), tiny.state_dict().values()):
        assert torch.equal(a, b), "the model was written as it was in memory"


def test_compress_takes_a_users_module_with_its_factory(tmp_path):
    torch.manual_seed(0)
    model = user_generators.dcgan(z_dim=16, width=16)
    report = compresskit.compress(model, ["export_onnx"], out=tmp_path / "user", data=SHAPES, bench=False,
                                  factory="tests.passes.user_generators:dcgan",
                                  factory_kwargs={"z_dim": 16, "width": 16})
    assert report.verdict == "not measured" and report.candidates == []
    assert [s["name"] for s in report.steps] == ["export_onnx"] and report.steps[0]["status"] == "done"


def test_bad_input_to_the_doors_is_one_line(tiny, tmp_path):
    with pytest.raises(compresskit.CompresskitError, match="not a compresskit generator: give factory="):
        compresskit.compress(user_generators.dcgan(z_dim=16, width=8), ["export_onnx"], out=tmp_path / "x")
    with pytest.raises(compresskit.CompresskitError, match="steps is empty"):
        compresskit.compress(tiny, [], out=tmp_path / "y")
    with pytest.raises(compresskit.RecipeError, match="did you mean 'export_onnx'"):
        compresskit.run({"input": {"model": "emoji32-tiny"}, "steps": [{"export_onx": {}}]}, tmp_path / "z")
    (tmp_path / "file").write_text("x")
    with pytest.raises(compresskit.CompresskitError, match="is a file"):
        compresskit.run({"input": {"model": "emoji32-tiny"}, "steps": [{"export_onnx": {}}]}, tmp_path / "file")


def test_third_party_chatter_goes_to_the_run_log_not_the_console(tmp_path, capsys):
    import logging
    import warnings

    from compresskit.api import RUN_LOG, _run_log
    from compresskit.runner import Event

    seen: list[Event] = []
    with _run_log(tmp_path, seen.append) as emit:
        warnings.warn("Converting a tensor to a Python boolean might cause the trace to be incorrect", UserWarning,
                      stacklevel=1)
        from nncf.common.logging import nncf_logger  # imported inside the run, as the quantize step does

        nncf_logger.info("Statistics collection")  # NNCF's own logger, its own stdout handler: still the log's
        logging.warning("Please consider pre-processing before quantization")  # the root logger, as onnxruntime does
        emit(Event("log", message="our own line"))
    log = (tmp_path / RUN_LOG).read_text()
    assert "UserWarning" in log and "Converting a tensor" in log and "nncf INFO: Statistics collection" in log
    assert "root WARNING: Please consider pre-processing" in log
    assert "our own line" in log and [e.message for e in seen] == ["our own line"], "progress still reaches the caller"
    captured = capsys.readouterr()
    shown = captured.err + captured.out
    assert "Converting a tensor" not in shown and "Statistics" not in shown and "pre-processing" not in shown
    assert logging.getLogger("nncf").handlers == [] or all(
        getattr(h, "stream", None) is not None and not getattr(h.stream, "closed", False)
        for h in logging.getLogger("nncf").handlers), "the loggers get their own handlers back"


def test_a_seed_change_reruns_the_steps_it_draws_from_instead_of_reusing_another_seeds_artifacts(tiny, tmp_path):
    folder = compresskit.save_model(tmp_path / "teacher", tiny, meta={"data": SHAPES})
    recipe = {"name": "seeded", "input": {"model": str(folder)}, "threads": 1,
              "steps": [{"distill": {"student": {"kind": "slim", "width": 0.5},
                                     "schedule": {"steps": 3, "batch_size": 4, "captions": 16},
                                     "validation": {"size": 8, "every": 3}}}]}

    def distill(seed: int) -> tuple[str, bool, bytes]:
        report = compresskit.run({**recipe, "seed": seed}, tmp_path / "run", bench=False)
        (step,) = report.steps
        weights = next((tmp_path / "run" / "artifacts").glob(f"*-{step['output_id']}")) / "model.safetensors"
        return step["output_id"], step["cached"], weights.read_bytes()

    first, second, first_again = distill(0), distill(1), distill(0)
    assert first[0] != second[0] and not second[1], "seed 1 must not reuse the student that seed 0 trained"
    assert first[2] != second[2], "another seed draws other noise and batches"
    assert first_again[:1] == first[:1] and first_again[1] and first_again[2] == first[2], "the same seed reuses"
