"""The merged-conditioning export form of a DF-GAN generator: same images, fewer graph nodes."""

from __future__ import annotations

import pytest
import torch

from compresskit.models import DFGenerator, load_model
from compresskit.models.contract import io_spec
from compresskit.models.dfgan import Affine
from compresskit.models.fused import FusedConditioning
from compresskit.models.inputs import caption_inputs, input_names
from tests.passes.test_token_generator import attention_teacher


def _trained_looking(g: DFGenerator) -> DFGenerator:
    """Random weights everywhere (a fresh generator's fusion MLPs start as the identity: a weak test)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2)
    return g.eval()


@pytest.mark.parametrize("kwargs", [{"convs_per_block": 2}, {"convs_per_block": 1, "channels": [16, 12, 8, 4]},
                                    {"convs_per_block": 1, "separable": True}])
def test_the_merged_form_draws_the_generators_images(kwargs):
    g = _trained_looking(DFGenerator(ngf=8, text_hidden=32, fuse_hidden=16, z_dim=16, **kwargs))
    z, text = torch.randn(5, 16), torch.nn.functional.normalize(torch.randn(5, 384), dim=-1)
    with torch.no_grad():
        plain, fused = g(z, text), FusedConditioning(g).eval()(z, text)
        assert (plain - fused).abs().max() < 1e-5
        assert plain.std() > 0.1, "a non-trivial image, so equality means something"
        assert all(a.precomputed is None for a in g.modules() if isinstance(a, Affine)), "nothing left behind"
        assert torch.equal(g(z, text), plain), "the plain generator still draws as before"


def test_a_token_conditioned_generator_merges_too(tmp_path):
    attention_teacher(tmp_path / "t")
    g = load_model(tmp_path / "t").eval()
    io = io_spec(g)
    inputs = caption_inputs(io, ["a red circle", "two blue squares at the top"], torch.randn(2, 16))
    args = [torch.from_numpy(inputs[name]) for name in input_names(io)]
    assert len(args) == 4, "z, text, tokens, token_mask"
    with torch.no_grad():
        assert (g(*args) - FusedConditioning(g).eval()(*args)).abs().max() < 1e-5
