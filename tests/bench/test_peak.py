import numpy as np
import pytest

from compresskit.bench.peak import FILES, PROBE_MACS, peak_kind, probe_folder, time_probe


def test_a_candidate_is_compared_with_the_probe_of_its_runtime_and_precision():
    assert peak_kind("openvino", "f32", int8=True) == "openvino/int8"
    assert peak_kind("openvino", "bf16", int8=False) == "openvino/bf16"
    assert peak_kind("onnxruntime", "f32", int8=True) == "onnxruntime/int8"
    assert peak_kind("torch", "f32", int8=False) == "torch/f32"
    assert peak_kind("torch", "f32", int8=True) is None, "no INT8 torch probe: no peak rather than a wrong one"


def test_every_form_of_the_probe_is_the_same_convolution_and_the_int8_ones_are_quantised():
    import onnxruntime as ort

    folder = probe_folder()
    assert probe_folder() == folder, "built once per library versions"
    x = np.random.default_rng(1).standard_normal((1, 256, 32, 32)).astype(np.float32)
    fp32 = ort.InferenceSession(str(folder / FILES["onnxruntime/f32"])).run(None, {"x": x})[0]
    int8 = ort.InferenceSession(str(folder / FILES["onnxruntime/int8"])).run(None, {"x": x})[0]
    assert fp32.shape == (1, 256, 32, 32)
    assert 0 < np.abs(int8 - fp32).mean() < 0.05 * np.abs(fp32).mean(), "quantised, and still the same convolution"
    assert b"QuantizeLinear" in (folder / FILES["onnxruntime/int8"]).read_bytes()
    assert b"FakeQuantize" in (folder / FILES["openvino/int8"]).read_bytes()
    assert b"FakeQuantize" not in (folder / FILES["openvino/f32"]).read_bytes()


def test_the_probe_rate_is_its_macs_over_its_median_time():
    found = time_probe(probe_folder(), "openvino/f32", threads=1, calls=5, warmup_s=0)
    assert found["n"] == 5
    assert found["gmacs_per_s"] == pytest.approx(PROBE_MACS / (found["ms_p50"] / 1000) / 1e9)
