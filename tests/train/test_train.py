from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from compresskit.errors import ConfigError, TrainingDiverged
from compresskit.models import load_model
from compresskit.train import TrainConfig, latest_checkpoint, load_train_config, train

TINY = Path(__file__).resolve().parents[2] / "recipes" / "train" / "emoji32-tiny.yaml"


def tiny(**overrides) -> TrainConfig:
    return load_train_config(TINY).model_copy(update=overrides)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_tiny_training_changes_weights_and_keeps_losses_finite(tmp_path):
    result = train(tiny(), tmp_path / "run")
    assert result.steps == 6 and result.images_per_second > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"]])).all() for r in records)
    first, last = weights(tmp_path / "run" / "checkpoints" / "step-0000003"), weights(result.final_dir)
    assert any(not torch.equal(first[k], last[k]) for k in first), "training must move the weights"
    generator = load_model(result.final_dir)
    assert generator(torch.randn(2, 16), torch.randn(2, 384)).shape == (2, 3, 32, 32)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step-0000003.png", "step-0000006.png"]


def test_recon_weight_pulls_samples_towards_their_captions_images(tmp_path):
    def final_mse(recon_weight: float, seed: int) -> float:
        run = tmp_path / f"recon{recon_weight}-seed{seed}"
        train(tiny(steps=128, log_every=4, lr_g=1e-3, recon_weight=recon_weight, seed=seed), run)
        records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        return sum(r["mse"] for r in records[-8:]) / 8  # the last 32 steps: one batch's MSE is noisy

    # One adversarial-only run is chaotic: at 64 steps its last batches' MSE ranged 0.45-0.92 over seeds, CPU
    # kinds and precisions (one seed once failed CI at 0.48 vs recon's 0.36). Three seeds of 128 steps measured
    # 0.34 vs 0.63 on average (ratio 0.54), so the 0.7 bound has a margin on every kind.
    seeds = (1, 2, 3)
    adversarial_only = sum(final_mse(0.0, s) for s in seeds) / len(seeds)
    with_recon = sum(final_mse(20.0, s) for s in seeds) / len(seeds)
    assert with_recon < 0.7 * adversarial_only


def test_recon_weight_anneals_linearly_to_zero_at_recon_until():
    config = tiny(recon_weight=10.0, recon_until=100)
    assert [config.recon_weight_at(s) for s in (0, 50, 100, 500)] == [10.0, 5.0, 0.0, 0.0]
    assert tiny(recon_weight=10.0).recon_weight_at(10_000) == 10.0
    floored = tiny(recon_weight=10.0, recon_until=100, recon_floor=4.0)
    assert [floored.recon_weight_at(s) for s in (0, 50, 100, 500)] == [10.0, 7.0, 4.0, 4.0], "it ends at the floor"


def test_mode_seeking_term_makes_two_noises_of_one_caption_differ_more(tmp_path):
    def late_mode_ratio(diversity_weight: float, run: str) -> float:
        # recon 20 pulls every noise towards the caption's one real image; mode seeking pushes back
        train(tiny(steps=48, log_every=4, lr_g=1e-3, recon_weight=20.0, diversity_weight=diversity_weight),
              tmp_path / run)
        generator = load_model(tmp_path / run / "final")
        z = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
        text = torch.nn.functional.normalize(torch.randn(1, 384, generator=torch.Generator().manual_seed(1)), dim=1)
        with torch.no_grad():
            images = generator(z, text.expand(16, -1))
        return images.std(dim=0).mean().item()

    plain, seeking = late_mode_ratio(0.0, "plain"), late_mode_ratio(1.0, "seeking")
    assert seeking > 1.5 * plain
    records = [json.loads(line) for line in (tmp_path / "seeking" / "log.jsonl").read_text().splitlines()]
    assert all(r["mode_ratio"] > 0 for r in records)


def test_resume_continues_at_the_saved_step_with_the_same_stream(tmp_path):
    straight = train(tiny(), tmp_path / "straight")
    train(tiny(steps=3), tmp_path / "split")
    resumed = train(tiny(), tmp_path / "split", resume=True)
    assert resumed.resumed_from == 3
    a, b = weights(straight.final_dir), weights(resumed.final_dir)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_existing_run_needs_resume_and_a_compatible_config(tmp_path):
    train(tiny(steps=3), tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume"):
        train(tiny(), tmp_path / "run")
    changed = tiny()
    changed.generator.ngf = 4
    with pytest.raises(ConfigError, match="cannot resume .*generator differ"):
        train(changed, tmp_path / "run", resume=True)


def test_divergence_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="diverged at step 0: loss_d = .*no checkpoint was written yet"):
        train(tiny(max_loss=1e-6), tmp_path / "fresh")
    train(tiny(steps=3), tmp_path / "run")
    good = latest_checkpoint(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="diverged at step 3: .*last good checkpoint .*step-0000003"):
        train(tiny(max_loss=1e-6), tmp_path / "run", resume=True)
    assert latest_checkpoint(tmp_path / "run") == good and (good / "train_state.safetensors").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nstepz: 5\n", "unknown key 'stepz'; did you mean 'steps'"),
    ("name: x\ngenerator: {ngff: 8}\n", "unknown key 'generator.ngff'; did you mean 'ngf'"),
    ("name: x\nsteps: -1\n", "steps: Input should be greater than or equal to 1"),
    ("name: x\ndata: {name: emojis}\n", "data.name: Input should be 'emoji' or 'shapes'"),
    ("[1, 2]\n", "must hold a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_training_configs_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_train_config(path)


def test_kill_9_loses_at_most_one_checkpoint_interval(tmp_path):
    config = tiny(steps=40, checkpoint_every=4, sample_every=100, log_every=4, threads=2).model_dump(mode="json")
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "compresskit", "train", str(path), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (latest_checkpoint(out) is None or latest_checkpoint(out).name < "step-0000008") and proc.poll() is None:
        assert time.monotonic() < deadline, "training did not reach a checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((latest_checkpoint(out) / "train_state.json").read_text())["step"]
    assert killed_at >= 8
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"steps {killed_at}->40" in resumed.stderr.replace("\n", " ")
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(4, 41, 4)), "steps redone after the kill are logged once"
    straight = train(load_train_config(path), tmp_path / "straight")
    a, b = weights(straight.final_dir), weights(out / "final")
    assert all(torch.equal(a[k], b[k]) for k in a), "the killed-and-resumed run must equal an uninterrupted one"


def test_collapse_guard_stops_a_saturated_generator(tmp_path, monkeypatch):
    from compresskit.models import dfgan

    def saturated(self, z, text):  # one flat image for every input, attached to a parameter so backward runs
        return (self.to_rgb.weight.sum() * 0 + 1).expand(len(z), 3, 32, 32)

    monkeypatch.setattr(dfgan.DFGenerator, "forward", saturated)
    with pytest.raises(TrainingDiverged, match="generator collapsed at step 2: all samples are the same image"):
        train(tiny(), tmp_path / "run")
