"""``sanitize``: make a torch generator export-ready without changing what it computes.

Eval mode; spectral / weight norm folded into plain weights; every weight checked finite. The output is
a plain compresskit generator folder (config.json + model.safetensors).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..artifact import Artifact
from ..errors import PassFailed
from ..models.io import load_model, save_model
from .base import Pass, PassConfig, PassContext, PassResult


def fold_weight_norms(model: nn.Module) -> list[str]:
    """Remove parametrizations (spectral / weight norm) and legacy weight-norm hooks, keeping the values."""
    folded = []
    for name, module in model.named_modules():
        if torch.nn.utils.parametrize.is_parametrized(module):
            for param in list(module.parametrizations.keys()):
                torch.nn.utils.parametrize.remove_parametrizations(module, param, leave_parametrized=True)
                folded.append(f"{name}.{param}")
        for hook in list(module._forward_pre_hooks.values()):
            if hook.__class__.__name__ in ("WeightNorm", "SpectralNorm"):
                remove = (torch.nn.utils.remove_weight_norm if hook.__class__.__name__ == "WeightNorm"
                          else torch.nn.utils.remove_spectral_norm)
                remove(module)
                folded.append(f"{name}.{hook.name}")
    return folded


class Sanitize(Pass):
    name = "sanitize"
    about = "eval mode, fold spectral/weight norm, check weights are finite: ready to export"
    Config = PassConfig
    accepts = ("torch",)
    produces = "torch"

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        generator = load_model(src.path).eval()
        folded = fold_weight_norms(generator)
        bad = [n for n, t in generator.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise PassFailed(f"sanitize: {len(bad)} tensor(s) hold NaN/inf (first: {bad[0]}); use an earlier checkpoint")
        save_model(out_dir, generator, generator.meta)
        return PassResult(details={"folded_norms": folded})
