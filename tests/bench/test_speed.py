from __future__ import annotations

import pytest

from compresskit.bench.speed import percentiles, probe, time_calls


def test_percentiles_on_known_timings():
    result = percentiles(list(range(1, 101)))  # 1..100 ms
    assert result == {"p50": 50.5, "p90": pytest.approx(90.1), "p99": pytest.approx(99.01), "n": 100,
                      "iqr": pytest.approx(49.5), "std": pytest.approx(28.866, abs=1e-3)}
    with pytest.raises(ValueError):
        percentiles([])


def test_time_calls_times_each_call():
    import time

    timings = time_calls(lambda: time.sleep(0.01), 3)
    assert len(timings) == 3 and all(9.0 < ms < 200.0 for ms in timings)


def test_probe_reports_first_inference_and_memory_of_a_fresh_process(tmp_path):
    from compresskit.models import create_generator, save_model
    from compresskit.runner import input_artifact

    folder = save_model(tmp_path / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    artifact = input_artifact(str(folder), tmp_path / "artifacts")
    result = probe(artifact.path, 1)
    assert result["first_inference_ms"] > 0 and result["peak_rss_mb"] >= result["baseline_rss_mb"] > 10


def test_probe_memory_is_the_probe_process_own_not_its_parent_peak(tmp_path):
    import numpy as np

    from compresskit.bench.probe import peak_rss_mb
    from compresskit.models import create_generator, save_model
    from compresskit.runner import input_artifact

    ballast = np.ones(1_500 * 2**20 // 8)  # 1.5 GiB touched in this (parent) process
    assert peak_rss_mb() > 1_500
    folder = save_model(tmp_path / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    result = probe(input_artifact(str(folder), tmp_path / "artifacts").path, 1)
    assert result["peak_rss_mb"] < 1_200, "ru_maxrss would report the parent's 1.5 GiB+ after fork + exec"
    del ballast
