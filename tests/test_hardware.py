"""The training precision is decided in one place, by the hardware: bf16 only where it is native (issue 40)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from compresskit import hardware
from compresskit.bench.compare import machine_warnings
from compresskit.bench.markdown import machine_line
from compresskit.hardware import isa, isa_label, machine_info, training_precision
from tests.passes.conftest import tiny_generator_dir  # noqa: F401 - the fixture

PACKAGE = Path(__file__).resolve().parents[1] / "compresskit"


@pytest.fixture
def no_native_bf16(monkeypatch):
    """This CPU as an AVX2-only one: no native bf16 (what torch's oneDNN check says there)."""
    monkeypatch.setattr(hardware, "native_bf16", lambda device_type="cpu": (False, "AVX2"))


@pytest.fixture
def autocast_calls(monkeypatch) -> list[bool]:
    """Every torch.autocast the package opens, as its ``enabled`` flag."""
    calls: list[bool] = []
    real = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kwargs):
        calls.append(bool(enabled))
        return real(device_type, dtype=dtype, enabled=enabled, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    return calls


def test_auto_trains_fp32_without_native_bf16_and_says_so_once(no_native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="compresskit"):
        precision = training_precision("auto", "cpu")
    assert not precision.bf16 and precision.name == "fp32" and precision.warned
    assert precision.note == "bf16 asked (auto); this CPU has no native bf16 (AVX2): training in fp32"
    assert [r.getMessage() for r in caplog.records] == [precision.note]
    assert precision.record()["hardware"] == "AVX2"


def test_auto_takes_bf16_where_native_and_false_forces_fp32_quietly(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "native_bf16", lambda device_type="cpu": (True, "AVX512-BF16"))
    with caplog.at_level(logging.WARNING, logger="compresskit"):
        assert training_precision("auto").bf16 and not training_precision("auto").warned
        forced_off = training_precision(False)
    assert not forced_off.bf16 and not forced_off.warned and "forced" in forced_off.note
    assert not caplog.records
    with pytest.raises(ValueError, match="bf16 must be true, false or auto"):
        training_precision("yes")


def test_forcing_bf16_on_a_cpu_without_it_runs_bf16_and_warns_with_the_measured_cost(no_native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="compresskit"):
        precision = training_precision(True, "cpu")
    assert precision.bf16 and precision.warned
    (message,) = [r.getMessage() for r in caplog.records]
    measured = re.search(r"emulated, a conv step measured ([0-9.]+)x the fp32 time here", message)
    assert measured and float(measured.group(1)) > 0, message
    assert "set bf16: auto or false" in message


def test_every_autocast_in_the_package_goes_through_the_hardware_module():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "hardware.py" and "torch.autocast(" in p.read_text("utf-8")]
    assert offenders == []


def test_training_the_teacher_runs_fp32_without_native_bf16(no_native_bf16, autocast_calls, tmp_path):
    from compresskit.models import load_model
    from compresskit.train import load_train_config, train

    config = load_train_config(Path(__file__).resolve().parents[1] / "recipes" / "train" / "emoji32-tiny.yaml")
    assert config.bf16 == "auto"
    result = train(config, tmp_path / "run")
    assert autocast_calls and not any(autocast_calls)
    assert load_model(result.final_dir).meta["precision"]["name"] == "fp32"


def test_distillation_runs_fp32_without_native_bf16_and_its_manifest_says_so(no_native_bf16, autocast_calls,
                                                                              tiny_generator_dir, tmp_path):  # noqa: F811
    from compresskit.recipe import parse_recipe
    from compresskit.runner import run
    from tests.passes.conftest import recipe_dict

    steps = [{"distill": {"schedule": {"steps": 4, "batch_size": 8, "captions": 16}, "validation": {"every": 2, "size": 8},
                          "student": {"kind": "slim", "width": 0.5}, "losses": {"pixel": 1.0, "feature": 1.0}}}]
    result = run(parse_recipe(recipe_dict(tiny_generator_dir, *steps), "r.yaml"), tmp_path / "run")
    assert autocast_calls and not any(autocast_calls)
    manifest = json.loads((result.final.path / "manifest.json").read_text())
    recorded = manifest["meta"]["training_precision"]
    assert recorded["bf16"] is False and recorded["asked"] == "auto" and "training in fp32" in recorded["note"]


def test_the_shallow_text_encoder_distils_in_fp32_without_native_bf16(no_native_bf16, autocast_calls):
    from compresskit.text.shallow import distill_shallow_encoder

    distill_shallow_encoder(["red apple", "cat face", "sun", "red heart"], layers=1, steps=2, batch_size=4)
    assert autocast_calls and not any(autocast_calls)


def test_isa_labels_name_what_matters_for_speed():
    assert isa_label(isa(frozenset({"avx2", "fma"}))) == "AVX2"
    assert isa_label(isa(frozenset({"avx2", "avx512f", "avx512_vnni"}))) == "AVX512-VNNI"
    assert isa_label(isa(frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}))) == "AVX512-BF16"
    assert isa_label(isa(frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"}))) == "AMX"
    assert isa_label(isa(frozenset({"sse4_2"}))) == "pre-AVX2"


def _no_isa_cap(monkeypatch) -> None:
    for name in hardware.ISA_LIMIT_VARS:
        monkeypatch.delenv(name, raising=False)


def test_an_isa_cap_in_the_environment_turns_native_bf16_off(monkeypatch):
    monkeypatch.setattr(hardware, "isa", lambda flags=None: {"avx2": True, "avx512": True, "vnni": True,
                                                             "avx512_bf16": True, "amx": False})
    monkeypatch.setattr(hardware, "_torch_has_bf16_kernels", lambda: False)  # what ONEDNN_MAX_CPU_ISA=AVX2 gives
    _no_isa_cap(monkeypatch)  # the suite itself may run capped (how the AVX2 figures are reproduced)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    native, found = hardware.native_bf16("cpu")
    assert not native and found == "AVX512-BF16 capped by ONEDNN_MAX_CPU_ISA=AVX2"


def test_machine_info_describes_the_cpu_and_compare_warns_across_cpus(monkeypatch):
    _no_isa_cap(monkeypatch)
    info = machine_info(threads=2)
    assert info["threads_used"] == 2 and info["cores"] >= 1 and info["cpu"]
    assert set(info["isa"]) == {"avx2", "avx512", "vnni", "avx512_bf16", "amx"}
    assert "FP32" in info["openvino_capabilities"]
    assert f"ISA {info['isa_label']}" in machine_line(info) and "2 thread(s) used" in machine_line(info)
    other = {**info, "cpu": "AMD EPYC 7B13", "isa_label": "AVX2"}
    assert machine_warnings([("a", {"environment": info}), ("b", {"environment": info})]) == []
    (warning,) = machine_warnings([("a", {"environment": info}), ("b", {"environment": other})])
    assert "different CPUs" in warning and "AMD EPYC 7B13 (AVX2)" in warning


def test_timing_at_bf16_on_a_cpu_capped_to_avx2_is_refused_as_not_applicable(tmp_path):
    from tests.helpers import run_cli

    done = run_cli("time", str(tmp_path), "--precision", "bf16",
                   env={"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"})
    assert done.returncode == 2, done.stderr
    assert "--precision bf16 is not applicable here: this CPU has no native bf16" in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr


def test_the_precision_auto_resolves_to_enters_the_artifact_id(monkeypatch):
    from compresskit.passes.bundle import Bundle
    from compresskit.passes.distill import Distill
    from compresskit.passes.execute import pass_output_id

    def ids(native: bool) -> tuple[str, ...]:
        monkeypatch.setattr(hardware, "native_bf16", lambda device_type="cpu": (native, "test"))
        return (pass_output_id(Distill, "distill", {"schedule": {"steps": 10}}, "parent", seed=0),
                pass_output_id(Distill, "distill", {"schedule": {"steps": 10}, "bf16": False}, "parent", seed=0),
                pass_output_id(Bundle, "bundle", {"text_layers": 2}, "parent", seed=0),
                pass_output_id(Bundle, "bundle", {}, "parent", seed=0))
    with_bf16, without = ids(True), ids(False)
    assert with_bf16[0] != without[0] and with_bf16[2] != without[2]  # a shared cache keeps both students
    assert with_bf16[1] == without[1] and with_bf16[3] == without[3]  # fp32 forced / no training: one id
