"""The OpenVINO runtime's call: inputs bound once and reused, outputs copied out, nothing stale (issue 40)."""

from __future__ import annotations

import numpy as np
import pytest

from compresskit.runtimes import Deployment, executed_precisions, openvino_runtime


@pytest.fixture(scope="module")
def affine_ir(tmp_path_factory):
    """out = 2 * x + y, x and y float32 (1, 4): small enough to check every value."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 4], np.float32, name="x")
    y = ops.parameter([1, 4], np.float32, name="y")
    out = ops.add(ops.multiply(x, ops.constant(np.float32(2.0))), y)
    path = tmp_path_factory.mktemp("ir") / "model.xml"
    ov.save_model(ov.Model([out], [x, y], "affine"), str(path))
    return path


def test_the_same_arrays_are_bound_once_and_read_afresh_each_call(affine_ir):
    runtime = openvino_runtime(affine_ir, deploy=Deployment(threads=1, batch=1, hint="latency"))
    x, y = np.ones((1, 4), np.float32), np.arange(4, dtype=np.float32)[None]
    inputs = {"x": x, "y": y}
    first = runtime(inputs)
    np.testing.assert_allclose(first, 2 + y)
    x[:] = 3.0  # shared memory: an in-place change is what the next call reads
    second = runtime(inputs)
    np.testing.assert_allclose(second, 6 + y)
    np.testing.assert_allclose(first, 2 + y)  # the first result was copied out, not overwritten
    other = runtime({"x": np.zeros((1, 4), np.float32), "y": y})  # a new array is bound in its place
    np.testing.assert_allclose(other, y)


def test_inputs_of_another_dtype_or_layout_are_converted(affine_ir):
    runtime = openvino_runtime(affine_ir, deploy=Deployment(threads=1, batch=1))
    x = np.arange(8, dtype=np.float64).reshape(4, 2).T[:1]  # float64, not contiguous
    np.testing.assert_allclose(runtime({"x": x, "y": np.zeros((1, 4), np.float32)}), 2 * x)


def test_a_missing_or_unknown_input_is_refused_not_served_from_the_last_call(affine_ir):
    runtime = openvino_runtime(affine_ir, deploy=Deployment(threads=1, batch=1))
    runtime({"x": np.ones((1, 4), np.float32), "y": np.ones((1, 4), np.float32)})
    with pytest.raises(ValueError, match=r"the model's inputs are x, y; got x \(missing 'y'\)"):
        runtime({"x": np.ones((1, 4), np.float32)})
    with pytest.raises(ValueError, match=r"got x, z \(missing 'y'; unknown 'z'\)"):
        runtime({"x": np.ones((1, 4), np.float32), "z": np.ones((1, 4), np.float32)})


def test_settings_say_what_the_compiled_graph_executes(affine_ir):
    settings = openvino_runtime(affine_ir, deploy=Deployment(threads=1, batch=1)).settings
    assert settings["INFERENCE_PRECISION_HINT"] == "f32"
    assert settings["executed_precisions"] and set(settings["executed_precisions"]) <= {"f32", "bf16", "i8", "u8", "f16"}
    assert sum(settings["executed_precisions"].values()) == sum(settings["executed_kernels"].values())
    assert executed_precisions({"Convolution u8 brgconv_avx512_I8": 4, "Subgraph f32 jit_avx2_f32": 2,
                                "FullyConnected u8 jit_gemm_I8": 1}) == {"u8": 5, "f32": 2}
