from __future__ import annotations

import pytest

from compresskit.bench.speed import interleaved_latency, percentiles, probe


def test_percentiles_on_known_timings():
    result = percentiles(list(range(1, 101)))  # 1..100 ms
    assert result == {"p50": 50.5, "p90": pytest.approx(90.1), "p99": pytest.approx(99.01), "n": 100,
                      "iqr": pytest.approx(49.5), "std": pytest.approx(28.866, abs=1e-3)}
    with pytest.raises(ValueError):
        percentiles([])


def test_interleaved_rounds_rotate_the_order_and_collect_every_call():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    timings = interleaved_latency(calls, rounds=3, per_round=2, warmup=1)
    assert {k: len(v) for k, v in timings.items()} == {"a": 6, "b": 6, "c": 6}
    measured = order[3:]  # after one warm-up call each
    assert measured[0::2][:3] == ["a", "b", "c"] and measured[6::2][:3] == ["b", "c", "a"]


def test_probe_reports_first_inference_and_memory_of_a_fresh_process(tmp_path):
    from compresskit.models import create_generator, save_generator
    from compresskit.runner import input_artifact

    folder = save_generator(tmp_path / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    artifact = input_artifact(str(folder), tmp_path / "artifacts")
    result = probe(artifact.path, threads=1)
    assert result["first_inference_ms"] > 0 and result["peak_rss_mb"] >= result["baseline_rss_mb"] > 10


def test_probe_memory_is_the_probe_process_own_not_its_parent_peak(tmp_path):
    import numpy as np

    from compresskit.bench.probe import peak_rss_mb
    from compresskit.models import create_generator, save_generator
    from compresskit.runner import input_artifact

    ballast = np.ones(1_500 * 2**20 // 8)  # 1.5 GiB touched in this (parent) process
    assert peak_rss_mb() > 1_500
    folder = save_generator(tmp_path / "g", create_generator(ngf=4, text_hidden=16, fuse_hidden=8))
    result = probe(input_artifact(str(folder), tmp_path / "artifacts").path, threads=1)
    assert result["peak_rss_mb"] < 1_200, "ru_maxrss would report the parent's 1.5 GiB+ after fork + exec"
    del ballast
