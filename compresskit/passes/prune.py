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
from typing import Annotated, Literal

import torch
from pydantic import Field

from ..artifact import Artifact
from ..errors import PassFailed, RecipeError
from ..models import count_params
from ..models.dfgan import DFGenerator, GeneratorConfig
from ..models.io import load_torch_generator, write_torch_generator
from ..models.user import build as build_user
from ..models.stats import macs_per_image
from .base import Pass, PassConfig, PassContext
from .parity import parity_inputs


class PruneConfig(PassConfig):
    ratio: float = Field(0.5, gt=0, lt=1)  # fraction of channels removed
    importance: Literal["l1", "l2", "taylor", "lamp", "random"] = "l1"
    global_pruning: bool = False
    per_layer: dict[str, Annotated[float, Field(gt=0, lt=1)]] = {}  # module name -> ratio, e.g. {"blocks.0.conv0": 0.25}
    round_to: int | None = Field(8, ge=1, le=1024)
    ignored: list[str] | None = None  # module names whose outputs are kept [default: the RGB head(s)]
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
                              "channels": [generator.stem.out_features // 16] + [b.out_channels for b in generator.blocks],
                              "hidden": [b.hidden_channels for b in generator.blocks]})


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
        generator = load_torch_generator(src.path).eval()
        own = isinstance(generator, DFGenerator)
        before = _size(generator)
        widths_before = _widths(generator)
        modules = dict(generator.named_modules())
        named = [*(cfg.ignored or []), *cfg.per_layer]
        unknown = [n for n in named if n not in modules]
        if unknown:
            raise RecipeError(f"prune: no module named {unknown[0]!r} in the generator; "
                              f"e.g. {', '.join(n for n in list(modules)[1:6])}")
        rgb_heads = [n for n, m in modules.items() if getattr(m, "out_channels", None) == 3]
        ignored_names = cfg.ignored if cfg.ignored is not None else rgb_heads
        kept = ["text_mlp", *(n + ".0" for n in modules if n.endswith((".gamma", ".beta")))] if own else []
        inputs = {k: torch.from_numpy(v) for k, v in parity_inputs(src.io, cfg.calibration_batch, ctx.seed).items()}
        example = (inputs["z"][:2], inputs["text"][:2])
        unsafe = [] if own else [n for n in reshaped_linears(generator, example) if n not in ignored_names]
        for name in unsafe:
            ctx.log(f"prune: keeping {name} whole: its output is reshaped into a feature map, which "
                    "Torch-Pruning cannot follow safely in a user model")
        torch.manual_seed(ctx.seed)  # random importance
        pruner = tp.pruner.BasePruner(
            generator, example, importance=_importance(cfg.importance), global_pruning=cfg.global_pruning,
            pruning_ratio=cfg.ratio, pruning_ratio_dict={modules[n]: r for n, r in cfg.per_layer.items()},
            ignored_layers=[modules[n] for n in [*ignored_names, *kept, *unsafe]], round_to=cfg.round_to,
            iterative_steps=cfg.iterative_steps, unwrapped_parameters=_learned_constants(generator))
        for _ in range(cfg.iterative_steps):
            if cfg.importance == "taylor":
                generator.zero_grad()
                generator(inputs["z"], inputs["text"]).pow(2).mean().backward()
            pruner.step()
        generator.zero_grad(set_to_none=True)
        widths_after = _widths(generator)
        unpruned = [n for n, w in widths_before.items() if widths_after[n] == w and n not in [*ignored_names, *kept, *unsafe]]
        if len(unpruned) == len(widths_before) - len([*ignored_names, *kept, *unsafe]):
            raise PassFailed(f"prune: Torch-Pruning found no channel group it can prune safely in this generator "
                             f"(e.g. {', '.join(unpruned[:3])}); drop the prune step or distil into a smaller model")
        if unpruned:
            ctx.log(f"prune: {len(unpruned)} layer(s) left at full width (no safe channel group): {', '.join(unpruned[:5])}")

        history = [*getattr(generator, "pruning_history", []), *pruner.pruning_history()]
        rebuilt = DFGenerator(pruned_config(generator)) if own else build_user(generator.config.spec, history)
        try:
            rebuilt.load_state_dict(generator.state_dict(), strict=True)
        except RuntimeError as exc:
            raise PassFailed(f"prune: the pruned model does not fit its rebuilt form ({str(exc).splitlines()[0]}); "
                             "add the offending layer to `ignored`") from None
        rebuilt.eval()
        with torch.no_grad():
            out = rebuilt(*example)
            drift = (out - generator(*example)).abs().max().item()
        if out.shape[1:] != (3, src.io["outputs"]["image"]["shape"][2], src.io["outputs"]["image"]["shape"][3]):
            raise PassFailed(f"prune: the pruned model outputs {tuple(out.shape[1:])}; add its RGB layer to `ignored`")
        if drift > 1e-5:
            raise PassFailed(f"prune: the rebuilt model differs from the pruned one by {drift:.3g}; not written")
        rebuilt.meta = generator.meta
        write_torch_generator(out_dir, rebuilt, generator.meta, pruning_history=history if not own else None)
        after = _size(rebuilt)
        return {"before": before, "after": after, "params_ratio": after["params"] / before["params"],
                "macs_ratio": after["macs"] / before["macs"],
                "kept_whole": [*ignored_names, *unsafe,
                               *(["text_mlp", f"{len(kept) - 1} fusion MLP hidden layers"] if own else [])],
                "unpruned_layers": unpruned, "pruning_history_steps": len(history) if not own else None,
                "generator_meta": generator.meta}


def reshaped_linears(model: torch.nn.Module, example: tuple) -> list[str]:
    """Linear layers whose output the next convolution receives reshaped into (C, H, W) (stems)."""
    order: list[tuple[str, str, int]] = []  # (name, kind, width): Linear out_features or conv input numel
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: order.append((name, "linear", o.shape[-1]))))
        elif isinstance(module, torch.nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: order.append((name, "conv", i[0][0].numel()))))
    try:
        with torch.no_grad():
            model(*example)
    finally:
        for hook in hooks:
            hook.remove()
    found = []
    for k, (name, kind, width) in enumerate(order):
        following = next((w for _, kd, w in order[k + 1 :] if kd == "conv"), None)
        if kind == "linear" and following == width:
            found.append(name)
    return found


def _learned_constants(model: torch.nn.Module) -> list[tuple[torch.nn.Parameter, int]]:
    """Top-level (1, C, H, W) parameters used as feature maps: their channel axis is dim 1, not the last."""
    return [(p, 1) for n, p in model.named_parameters() if "." not in n and p.dim() == 4 and p.shape[0] == 1]


def _widths(model: torch.nn.Module) -> dict[str, int]:
    """Output width of every convolution and linear layer."""
    return {n: getattr(m, "out_channels", None) or m.out_features for n, m in model.named_modules()
            if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))}


def _size(generator: torch.nn.Module) -> dict:
    size = {"params": count_params(generator), "macs": macs_per_image(generator)}
    if isinstance(generator, DFGenerator):
        size.update(channels=list(generator.config.channels), hidden=list(generator.config.hidden))
    return size
