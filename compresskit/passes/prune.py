"""``prune``: structured channel pruning with Torch-Pruning's dependency graph (DepGraph), on any generator.

DepGraph traces the generator and couples every layer whose channels must shrink together (a conv and
the BatchNorm after it, residual adds, the ``view`` after a stem, FiLM scale/shift Linears that multiply
conv channels). Importance: ``l1`` / ``l2`` (weight magnitude), ``taylor`` (|weight x gradient| of the
output energy on seeded calibration inputs: data-free), ``lamp``, ``random``. ``ratio`` applies to every
layer (or to the whole network with ``global_pruning``); ``per_layer`` overrides it for named modules;
``round_to`` keeps widths multiples of a SIMD-friendly number; ``iterative_steps`` prunes in rounds.

Kept whole, always, and listed in the artifact's meta (``kept_whole``, with why):

* the RGB head (or ``ignored``) and the layers the model's form cannot re-width (``fixed_width_layers``
  of the model contract: for the project's DF-GAN, the caption MLP and the fusion MLPs' hidden layers);
* in a user's generator, a Linear whose output is reshaped into a feature map (a stem: users often
  reshape with a stored width), and every channel group that does not survive a trial: each group is
  first pruned alone on a copy, and kept whole if Torch-Pruning crashes on it, the model then fails to
  run or draws the wrong shape, or the pruned model cannot be rebuilt from its form (factory + replayed
  history) with identical output. Self-attention, PixelShuffle and modulated convolutions end up here.

The pruned model is rebuilt from its form alone (config widths, or factory + history) and must reproduce
the pruned module's output exactly; if it does not, the pass fails rather than write a broken model. When
no group can be pruned safely the step still finishes: it writes the model unchanged and says so.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field

from ..artifact import Artifact, Format
from ..errors import PassFailed, RecipeError
from ..models import count_params
from ..models.contract import fixed_width_layers, is_user_model, layer_widths, rebuilt
from ..models.inputs import input_names
from ..models.io import load_model, save_model
from ..models.stats import macs_per_image
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult
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


class Prune(Pass):
    name = "prune"
    about = "structured channel pruning (Torch-Pruning DepGraph): l1/l2/taylor/lamp/random, round_to, per layer"
    Config = PruneConfig
    accepts = (Format.TORCH,)
    produces = Format.TORCH
    libraries = ("torch", "torch-pruning")
    version = "2"  # 2: any generator (the model contract); unsafe groups of user models kept whole
    metrics = {"params_ratio": PassMetric("", "lower", "parameters after / before"),
               "macs_ratio": PassMetric("", "lower", "MACs per image after / before")}

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        cfg = self.config
        model = load_model(src.path).eval()
        before, widths_before = _size(model), layer_widths(model)
        modules = dict(model.named_modules())
        unknown = [n for n in [*(cfg.ignored or []), *cfg.per_layer] if n not in modules]
        if unknown:
            raise RecipeError(f"prune: no module named {unknown[0]!r} in the generator; "
                              f"e.g. {', '.join(n for n in list(modules)[1:6])}")
        inputs = {k: torch.from_numpy(v) for k, v in parity_inputs(src.io, cfg.calibration_batch, ctx.seed).items()}
        example = tuple(inputs[name][:2] for name in input_names(src.io))
        rgb_heads = [n for n, m in modules.items() if isinstance(m, torch.nn.modules.conv._ConvNd) and m.out_channels == 3]
        kept = {n: "the RGB head" for n in (rgb_heads if cfg.ignored is None else [])}
        kept.update({n: "listed in ignored" for n in cfg.ignored or []})
        kept.update({n: "its width is fixed by the model's form" for n in fixed_width_layers(model)})
        if is_user_model(model):
            kept.update({n: "its output is reshaped into a feature map" for n in reshaped_linears(model, example)
                         if n not in kept})
            kept.update({n: f"pruning it alone failed a trial ({why})"
                         for n, why in _unsafe_groups(model, example, cfg, list(kept), ctx.seed).items()})
        for name, why in kept.items():
            ctx.log(f"prune: keeping {name} whole: {why}")

        pruner = _pruner(model, example, cfg, list(kept), ctx.seed)
        for _ in range(cfg.iterative_steps):
            if cfg.importance == "taylor":
                model.zero_grad()
                model(*(inputs[name] for name in input_names(src.io))).pow(2).mean().backward()
            pruner.step()
        model.zero_grad(set_to_none=True)
        model.pruning_history = [*getattr(model, "pruning_history", []), *pruner.pruning_history()]
        fresh = _verified_rebuild(model, example, src.io)
        widths_after = layer_widths(fresh)
        narrowed = [n for n, w in widths_before.items() if widths_after.get(n, w) < w]
        if not narrowed:
            ctx.log("prune: Torch-Pruning found no channel group it can prune safely; the model is written unchanged")
        save_model(out_dir, fresh, model.meta)
        after = _size(fresh)
        return PassResult(
            metrics={"params_ratio": after["params"] / before["params"], "macs_ratio": after["macs"] / before["macs"]},
            details={"before": before, "after": after, "kept_whole": list(kept), "kept_whole_why": kept,
                     "narrowed_layers": len(narrowed), "layers": len(widths_before),
                     "pruning_history_steps": len(model.pruning_history) if is_user_model(model) else None})


def _pruner(model: torch.nn.Module, example: tuple, cfg: PruneConfig, kept: list[str], seed: int):
    """A Torch-Pruning pruner for ``model`` with the ``kept`` layers ignored."""
    import torch_pruning as tp

    modules = dict(model.named_modules())
    torch.manual_seed(seed)  # random importance
    ignored = [modules[n] for n in kept]
    with warnings.catch_warnings():  # raw Parameters it cannot place (modulated conv weights): those stay whole
        warnings.simplefilter("ignore")
        return tp.pruner.BasePruner(
            model, example, importance=_importance(cfg.importance), global_pruning=cfg.global_pruning,
            pruning_ratio=cfg.ratio, pruning_ratio_dict={modules[n]: r for n, r in cfg.per_layer.items()},
            ignored_layers=ignored, round_to=cfg.round_to, iterative_steps=cfg.iterative_steps,
            unwrapped_parameters=_learned_constants(model))


def _group_roots(model: torch.nn.Module, example: tuple, kept: list[str]) -> list[str]:
    """The root layer of every channel group DepGraph offers (each prunable layer is in exactly one group)."""
    import torch_pruning as tp

    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example,
                                                      unwrapped_parameters=_learned_constants(model))
    groups = graph.get_all_groups(ignored_layers=[m for n in kept for m in modules[n].modules()])
    return [names[group[0].dep.target.module] for group in groups if group[0].dep.target.module in names]


def _unsafe_groups(model: torch.nn.Module, example: tuple, cfg: PruneConfig, kept: list[str], seed: int) -> dict:
    """{root layer: why} for every group that fails when pruned alone on a copy of the model."""
    try:
        roots = _group_roots(model, example, kept)
    except Exception as exc:  # noqa: BLE001 - Torch-Pruning cannot trace the model at all
        raise PassFailed(f"prune: Torch-Pruning cannot trace this generator ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}); drop the prune step or distil into a smaller model") from None
    unsafe = {}
    for root in roots:
        trial = copy.deepcopy(model)
        try:
            pruner = _pruner(trial, example, cfg, [*kept, *(n for n in roots if n != root)], seed)  # this group alone
            pruner.step()
            trial.pruning_history = [*getattr(trial, "pruning_history", []), *pruner.pruning_history()]
            _verified_rebuild(trial, example, None)
        except Exception as exc:  # noqa: BLE001 - whatever breaks, this group stays whole
            unsafe[root] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"
    return unsafe


def _verified_rebuild(pruned: torch.nn.Module, example: tuple, io: dict | None) -> torch.nn.Module:
    """A fresh instance of the pruned model's form, loaded with its weights, checked to compute the same images."""
    fresh = rebuilt(pruned)
    try:
        fresh.load_state_dict(pruned.state_dict(), strict=True)
    except RuntimeError as exc:
        raise PassFailed(f"prune: the pruned model does not fit its rebuilt form ({str(exc).splitlines()[0]}); "
                         "add the offending layer to `ignored`") from None
    fresh.eval()
    with torch.no_grad():
        out = fresh(*example)
        drift = (out - pruned.eval()(*example)).abs().max().item()
    size = (io or {}).get("outputs", {}).get("image", {}).get("shape", [None, 3, None, None])
    if out.dim() != 4 or out.shape[1] != 3 or (size[2] and tuple(out.shape[2:]) != (size[2], size[3])):
        raise PassFailed(f"prune: the pruned model outputs {tuple(out.shape[1:])}; add its RGB layer to `ignored`")
    if not drift <= 1e-5:
        raise PassFailed(f"prune: the rebuilt model differs from the pruned one by {drift:.3g}; not written")
    fresh.meta = getattr(pruned, "meta", {})
    fresh.pruning_history = getattr(pruned, "pruning_history", [])
    return fresh


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


def _size(generator: torch.nn.Module) -> dict:
    size = {"params": count_params(generator), "macs": macs_per_image(generator)}
    if hasattr(generator, "current_config"):  # the project's DF-GAN: widths by stage
        config = generator.current_config()
        size.update(channels=list(config.channels), hidden=list(config.hidden))
    return size
