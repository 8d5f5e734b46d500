"""``prune``: structured channel pruning with Torch-Pruning's dependency graph (DepGraph).

DepGraph traces the generator and couples every layer whose channels must shrink together: the stem
Linear and the ``view`` to (C, 4, 4) after it (C groups of 16 outputs), each block's convolutions and 1x1
shortcut, and the fusion layers' scale/shift Linears whose outputs multiply conv channels. Importance:
``l1`` / ``l2`` (weight magnitude), ``taylor`` (|weight x gradient| of the output energy on seeded
calibration inputs: data-free), ``lamp``, ``random``. ``ratio`` applies to every layer (or to the whole
network with ``global_pruning``); ``per_layer`` overrides it for named modules; ``round_to`` keeps widths
multiples of a SIMD-friendly number; ``iterative_steps`` prunes in several rounds.

Kept whole, always, and listed in the artifact's meta: the RGB head's outputs, the caption MLP and the
hidden layers of the fusion MLPs (the generator config stores one width for each of those). The pruned
model is rebuilt from its new config alone and must reproduce the pruned module's output exactly; if it
does not, the pass fails rather than write a broken model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed, RecipeError
from ..models import count_params
from ..models.dfgan import DFGenerator, GeneratorConfig
from ..models.io import load_generator, write_generator
from ..models.stats import macs_per_image
from .base import Pass, PassConfig, PassContext
from .parity import parity_inputs


class PruneConfig(PassConfig):
    ratio: float = Field(0.5, gt=0, lt=1)  # fraction of channels removed
    importance: Literal["l1", "l2", "taylor", "lamp", "random"] = "l1"
    global_pruning: bool = False
    per_layer: dict[str, float] = {}  # module name -> ratio, e.g. {"blocks.0.conv0": 0.25}
    round_to: int | None = Field(8, ge=1)
    ignored: list[str] = ["to_rgb"]  # module names whose outputs are kept
    iterative_steps: int = Field(1, ge=1, le=20)
    calibration_batch: int = Field(32, ge=1, le=1024)  # taylor: inputs for the gradient


def _importance(name: str):
    import torch_pruning as tp

    return {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
            "l2": lambda: tp.importance.MagnitudeImportance(p=2),
            "taylor": lambda: tp.importance.TaylorImportance(),
            "lamp": lambda: tp.importance.LAMPImportance(p=2),
            "random": lambda: tp.importance.RandomImportance()}[name]()


def pruned_config(generator: DFGenerator) -> GeneratorConfig:
    """The widths a (pruned) module actually has, as a config that rebuilds it."""
    return GeneratorConfig(**{**generator.config.model_dump(),
                              "channels": [generator.stem.out_features // 16] + [b.conv1.out_channels for b in generator.blocks],
                              "hidden": [b.conv0.out_channels for b in generator.blocks]})


class Prune(Pass):
    name = "prune"
    about = "structured channel pruning (Torch-Pruning DepGraph): l1/l2/taylor/lamp/random, round_to, per layer"
    Config = PruneConfig
    accepts = ("torch",)
    produces = "torch"
    libraries = ("torch", "torch-pruning")

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> dict:
        import torch_pruning as tp

        cfg = self.config
        generator = load_generator(src.path).eval()
        before = {"params": count_params(generator), "macs": macs_per_image(generator),
                  "channels": list(generator.config.channels), "hidden": list(generator.config.hidden)}
        modules = dict(generator.named_modules())
        unknown = [n for n in [*cfg.ignored, *cfg.per_layer] if n not in modules]
        if unknown:
            raise RecipeError(f"prune: no module named {unknown[0]!r} in the generator; "
                              f"e.g. {', '.join(n for n in list(modules)[1:6])}")
        kept = ["text_mlp", *(n + ".0" for n in modules if n.endswith((".gamma", ".beta")))]
        ignored = [modules[n] for n in [*cfg.ignored, *kept]]
        inputs = {k: torch.from_numpy(v) for k, v in parity_inputs(src.io, cfg.calibration_batch, ctx.seed).items()}
        example = (inputs["z"][:2], inputs["text"][:2])
        torch.manual_seed(ctx.seed)  # random importance
        pruner = tp.pruner.BasePruner(
            generator, example, importance=_importance(cfg.importance), global_pruning=cfg.global_pruning,
            pruning_ratio=cfg.ratio, pruning_ratio_dict={modules[n]: r for n, r in cfg.per_layer.items()},
            ignored_layers=ignored, round_to=cfg.round_to, iterative_steps=cfg.iterative_steps)
        for _ in range(cfg.iterative_steps):
            if cfg.importance == "taylor":
                generator.zero_grad()
                generator(inputs["z"], inputs["text"]).pow(2).mean().backward()
            pruner.step()
        generator.zero_grad(set_to_none=True)

        rebuilt = DFGenerator(pruned_config(generator)).eval()
        try:
            rebuilt.load_state_dict(generator.state_dict(), strict=True)
        except RuntimeError as exc:
            raise PassFailed(f"prune: the pruned model does not fit its own config ({str(exc).splitlines()[0]}); "
                             "add the offending layer to `ignored`") from None
        with torch.no_grad():
            drift = (rebuilt(*example) - generator(*example)).abs().max().item()
        if drift > 1e-5:
            raise PassFailed(f"prune: the rebuilt model differs from the pruned one by {drift:.3g}; not written")
        rebuilt.meta = generator.meta
        write_generator(out_dir, rebuilt, generator.meta)
        after = {"params": count_params(rebuilt), "macs": macs_per_image(rebuilt),
                 "channels": list(rebuilt.config.channels), "hidden": list(rebuilt.config.hidden)}
        return {"before": before, "after": after, "params_ratio": after["params"] / before["params"],
                "macs_ratio": after["macs"] / before["macs"],
                "kept_whole": [*cfg.ignored, "text_mlp", f"{len(kept) - 1} fusion MLP hidden layers"],
                "generator_meta": generator.meta}
