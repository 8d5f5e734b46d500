"""A DF-GAN generator's caption modulations computed in two matmuls: an export-time rewrite, same function.

Every fusion block of a ``DFGenerator`` predicts a per-channel scale (gamma) and shift (beta) from the same
condition vector ``cond = [z, MLP(text)]``, each with its own two-layer MLP. A slim student with one conv per
block has 3 fusion blocks x 2 affines x 2 MLPs x 2 layers = 24 tiny matrix-vector products at batch 1: on a
CPU each is a graph node with its fixed cost, and together they took ~30% of the INT8 student's time while
holding ~3% of its MACs (OpenVINO's per-node counters). All those MLPs read the same ``cond``, so:

* their first layers concatenate into one ``Linear(cond_dim, M * hidden)`` (M = number of MLPs);
* their second layers become one batched matmul ``(M, N, hidden) @ (M, hidden, C_max)``, each MLP's output
  zero-padded to the widest ``C_max`` and sliced back per affine.

``FusedConditioning(generator)`` wraps a trained generator: its two weights are copies of the generator's own,
concatenated and zero-padded, and its forward is the generator's own forward, with a hook on the caption MLP
that hands every ``Affine`` its precomputed scale and shift for that one call (so the traced graph has the two
matmuls instead of the 24). It computes the same images up to float rounding (the ``export_onnx`` parity check
measures it; on the tested generators the torch outputs are bit-identical). Pruning, distillation and
evaluation keep working on the plain generator; ``export_onnx: {fuse_conditioning: true}`` exports the wrapper.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .dfgan import Affine, DFGenerator


def can_fuse(generator: nn.Module) -> str | None:
    """None if ``generator`` can be wrapped, else why not (one line)."""
    if not isinstance(generator, DFGenerator):
        return f"fuse_conditioning applies to the project's DF-GAN generators, not {type(generator).__name__}"
    mlps = [mlp for a in generator.modules() if isinstance(a, Affine) for mlp in (a.gamma, a.beta)]
    if len({mlp[0].out_features for mlp in mlps}) != 1:
        return "fuse_conditioning needs one hidden width for every fusion MLP (this generator's differ)"
    return None


class FusedConditioning(nn.Module):
    """``forward(z, text[, tokens, token_mask])`` of ``generator`` with its fusion MLPs merged (see module doc)."""

    def __init__(self, generator: DFGenerator):
        super().__init__()
        reason = can_fuse(generator)
        if reason:
            raise ValueError(reason)
        self.generator = generator
        self.affines = [a for a in generator.modules() if isinstance(a, Affine)]  # a plain list: not re-registered
        mlps = [mlp for a in self.affines for mlp in (a.gamma, a.beta)]
        self.widths = [mlp[2].out_features for mlp in mlps]  # gamma, beta of affine 0, then of affine 1, ...
        hidden, widest = mlps[0][0].out_features, max(self.widths)
        with torch.no_grad():
            self.first = nn.Linear(mlps[0][0].in_features, hidden * len(mlps))
            self.first.weight.copy_(torch.cat([mlp[0].weight for mlp in mlps]))
            self.first.bias.copy_(torch.cat([mlp[0].bias for mlp in mlps]))
            second = torch.zeros(len(mlps), hidden, widest)
            second_bias = torch.zeros(len(mlps), 1, widest)
            for i, mlp in enumerate(mlps):
                second[i, :, :mlp[2].out_features] = mlp[2].weight.T
                second_bias[i, 0, :mlp[2].out_features] = mlp[2].bias
        self.second = nn.Parameter(second)
        self.second_bias = nn.Parameter(second_bias)
        self.hidden = hidden

    def modulations(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(gamma, beta) of every affine, in module order, each (N, C, 1, 1)."""
        n, m = cond.shape[0], len(self.widths)
        h = F.relu(self.first(cond)).reshape(n, m, self.hidden).transpose(0, 1)  # M, N, hidden
        out = torch.matmul(h, self.second) + self.second_bias  # M, N, C_max
        values = [out[i, :, :width, None, None] for i, width in enumerate(self.widths)]
        return list(zip(values[0::2], values[1::2]))

    def forward(self, z: torch.Tensor, text: torch.Tensor, *tokens: torch.Tensor) -> torch.Tensor:
        g = self.generator

        def modulate(_module, _inputs, embedded: torch.Tensor) -> None:  # once the caption MLP has run
            for affine, mod in zip(self.affines, self.modulations(torch.cat([z, embedded], dim=1))):
                affine.precomputed = mod

        hook = g.text_mlp.register_forward_hook(modulate)
        try:
            return g(z, text, *tokens)
        finally:
            hook.remove()
            for affine in self.affines:
                affine.precomputed = None
