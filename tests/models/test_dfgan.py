from __future__ import annotations

import json

import pytest
import torch

from compresskit.errors import ModelError
from compresskit.models import (
    DFDiscriminator,
    DFGenerator,
    GeneratorConfig,
    count_params,
    create_generator,
    io_spec,
    load_model,
    save_model,
)


@pytest.mark.parametrize("ngf", [4, 8, 16])
@pytest.mark.parametrize("batch", [1, 3])
def test_generator_forward_shapes(ngf, batch):
    torch.manual_seed(0)
    g = create_generator("dfgan", ngf=ngf, text_hidden=16, fuse_hidden=8).eval()
    out = g(torch.randn(batch, 100), torch.randn(batch, 384))
    assert out.shape == (batch, 3, 32, 32)
    assert out.abs().max() <= 1.0


def test_rgb_head_is_linear_in_training_and_clamped_in_eval():
    g = create_generator("dfgan", ngf=4, text_hidden=16, fuse_hidden=8)
    torch.nn.init.constant_(g.to_rgb.bias, 3.0)  # push every pixel far above the image range
    z, text = torch.randn(2, 100), torch.randn(2, 384)
    assert g.train()(z, text).min() > 1.5, "no saturating tanh while training"
    assert torch.equal(g.eval()(z, text), torch.ones(2, 3, 32, 32))


def test_caption_reaches_the_stem():
    torch.manual_seed(0)
    g = create_generator("dfgan", ngf=4, text_hidden=16, fuse_hidden=8).eval()
    seen = []
    g.stem.register_forward_hook(lambda module, args, out: seen.append(out))
    z = torch.randn(1, 100)
    g(z, torch.randn(1, 384)), g(z, torch.randn(1, 384))
    assert not torch.allclose(seen[0], seen[1]), "same noise, different captions: the 4x4 layout must differ"


def test_default_widths_follow_dfgan():
    config = GeneratorConfig(ngf=64)
    assert config.channels == [512, 256, 128, 64] and config.hidden == [256, 128, 64]
    assert GeneratorConfig(ngf=8, image_size=64).channels == [64, 64, 32, 16, 8]
    assert 7_000_000 < count_params(create_generator(ngf=64)) < 8_000_000


def test_pruned_widths_build_and_run_from_config_alone(tmp_path):
    pruned = create_generator(ngf=8, channels=[40, 24, 12, 6], hidden=[20, 10, 5], text_hidden=16, fuse_hidden=8)
    assert pruned.stem.out_features == 40 * 16
    assert pruned(torch.randn(2, 100), torch.randn(2, 384)).shape == (2, 3, 32, 32)
    reloaded = load_model(save_model(tmp_path / "pruned", pruned))
    assert reloaded.config.channels == [40, 24, 12, 6]


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(1)
    g = create_generator(ngf=8, text_hidden=16, fuse_hidden=8)
    h = load_model(save_model(tmp_path / "g", g, {"note": "x"}))
    assert h.meta == {"note": "x"}
    for (name, a), (_, b) in zip(g.state_dict().items(), h.state_dict().items()):
        assert torch.equal(a, b), name
    z, t = torch.randn(2, 100), torch.randn(2, 384)
    assert torch.equal(g.eval()(z, t), h(z, t))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"channels": [8, 4]}, "needs 4 channels and 3 hidden"),
    ({"image_size": 48}, "power of two"),
    ({"channels": [8, 4, 0, 2]}, ">= 1"),
])
def test_bad_architecture_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**kwargs)


def test_unknown_generator_name_suggests():
    with pytest.raises(ModelError, match=r"unknown generator 'dfgna'; did you mean 'dfgan'\? \(known: dfgan\)"):
        create_generator("dfgna")


def test_io_spec_names_inputs_with_dynamic_batch():
    spec = io_spec(create_generator(ngf=4))
    assert list(spec["inputs"]) == ["z", "text"]
    assert spec["inputs"]["z"]["shape"] == ["batch", 100]
    assert spec["outputs"]["image"]["shape"] == ["batch", 3, 32, 32]


def test_discriminator_judges_pairs():
    d = DFDiscriminator(32, ndf=8)
    feats = d.features(torch.randn(5, 3, 32, 32))
    assert feats.shape == (5, 64, 4, 4)
    assert d.judge_pair(feats, torch.randn(5, 384)).shape == (5,)


class TestBadCheckpoints:
    """What loading checks in a folder without checksums.sha256 (a user's own export); with one, any edit
    below is caught first by the checksum (tests/test_reliability_round2.py)."""

    @pytest.fixture
    def folder(self, tmp_path):
        folder = save_model(tmp_path / "g", create_generator(ngf=4, text_hidden=8, fuse_hidden=4))
        (folder / "checksums.sha256").unlink()
        return folder

    def test_missing_folder(self, tmp_path):
        with pytest.raises(ModelError, match="not a shipped model"):
            load_model(tmp_path / "nope")

    def test_missing_weights(self, folder):
        (folder / "model.safetensors").unlink()
        with pytest.raises(ModelError, match="has no model.safetensors"):
            load_model(folder)

    def test_truncated_weights(self, folder):
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelError, match="corrupt or truncated"):
            load_model(folder)

    def test_unknown_config_key(self, folder):
        config = json.loads((folder / "config.json").read_text())
        config["generator"]["ngff"] = 3
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ModelError, match="unknown key 'ngff'; did you mean 'ngf'"):
            load_model(folder)

    def test_weights_that_do_not_match_the_config(self, folder):
        config = json.loads((folder / "config.json").read_text())
        config["generator"]["channels"] = [64, 32, 16, 8]
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ModelError, match="does not match its config.json"):
            load_model(folder)

    def test_not_json(self, folder):
        (folder / "config.json").write_text("{oops")
        with pytest.raises(ModelError, match="not valid JSON"):
            load_model(folder)


def _attention_generator(**kwargs) -> DFGenerator:
    torch.manual_seed(0)
    g = DFGenerator(ngf=8, text_hidden=32, fuse_hidden=16, z_dim=16, attention=[8, 16], attn_dim=16, attn_heads=2,
                    token_length=12, **kwargs).eval()
    with torch.no_grad():  # zero-initialised outputs make attention a no-op until trained
        for layer in g.attend.values():
            layer.out.weight.normal_(0, 0.5)
    return g


@pytest.mark.parametrize("token_layers, query, qk_norm", [(0, "content", False), (2, "content", False), (2, "position", True)])
def test_a_token_conditioned_generator_reads_its_tokens_and_ignores_padding(token_layers, query, qk_norm):
    from compresskit.models.inputs import call_torch, random_inputs

    g = _attention_generator(token_layers=token_layers, token_width=16, attn_query=query, qk_norm=qk_norm)
    spec = io_spec(g)
    assert list(spec["inputs"]) == ["z", "text", "tokens", "token_mask"]
    assert spec["inputs"]["tokens"]["shape"] == ["batch", 12, 384] and spec["inputs"]["token_mask"]["shape"] == ["batch", 12]
    inputs = random_inputs(spec, 2, 0)
    inputs["token_mask"][:] = 0
    inputs["token_mask"][:, :5] = 1
    with torch.no_grad():
        base = call_torch(g, inputs)
        padding = {**inputs, "tokens": inputs["tokens"].copy()}
        padding["tokens"][:, 5:] = 7.0  # anything in the padding
        word = {**inputs, "tokens": inputs["tokens"].copy()}
        word["tokens"][:, 2] = word["tokens"][:, 3]  # one real token changed
        assert torch.equal(call_torch(g, padding), base)
        assert (call_torch(g, word) - base).abs().max() > 1e-3
    with pytest.raises(ValueError, match="pass tokens and token_mask"):
        g(torch.randn(1, 16), torch.randn(1, 384))


def test_attention_layers_keep_their_width_and_the_rest_rebuilds_from_config():
    g = _attention_generator()
    fixed = g.fixed_width_layers()
    assert {"attend.0.query", "attend.0.key", "attend.0.value", "attend.1.query"} <= set(fixed)
    assert "attend.0.out" not in fixed  # it writes the block's channels: prunable with them
    assert {"token_in", "token_mix"} <= set(_attention_generator(token_layers=1, token_width=16).fixed_width_layers())
    positional = _attention_generator(attn_query="position")
    assert not hasattr(positional.attend["0"], "query") and "attend.0.query" not in positional.fixed_width_layers()
    config = g.current_config()
    assert config.attention == [8, 16] and DFGenerator(config).state_dict().keys() == g.state_dict().keys()


@pytest.mark.parametrize("kwargs, message", [({"attention": [4]}, "block outputs"),
                                             ({"attn_dim": 10, "attn_heads": 4}, "multiples of attn_heads")])
def test_bad_attention_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DFGenerator(**kwargs)
