"""``select_subnet``: the sub-network of a ``supernet`` artifact with the best *val* quality under a latency budget.

The budget is measured, not counted: every candidate sub-network (the uniform ones, one per width choice and
depth, plus ``candidates`` drawn at random, seeded) is extracted, exported as the edge recipe deploys it (ONNX
with the fusion MLPs merged, OpenVINO IR, NNCF post-training INT8 on ``subset_size`` train calibration pairs)
and timed at batch 1 on this CPU with ``threads`` threads, in ``rounds`` rounds of ``calls`` calls each, the
candidates in a seeded random order every round so a slow spell of the machine is shared (the teacher's own
plain INT8 export is timed in the same rounds: ``speedup_vs_teacher_int8`` budgets are ratios of one run). The
latency table is cached per machine (CPU model, ISA, threads, the library versions) and candidate set: measured
once, reused by later runs. MACs do not decide: at batch 1 our students run far from the CPU's peak.

Quality, on the **val** split (``val_n`` captions, default all of them, the seed of ``compresskit eval``), for the candidates inside
the budget only: R-precision (the emoji aligner), KID (Lite0 features, against the train images) and
diversity, each also computed for the teacher. The chosen sub-network has the highest val R-precision (attribute accuracy for shapes) among
those whose KID is at most ``kid_max_increase`` above the teacher's and whose diversity keeps ``min_diversity``
of the teacher's (the edge recipe's quality budget); if none does, the highest R-precision within the budget.
A sub-network reads the text encoder the supernet was trained for (``text_layers`` in its meta; the teacher the
full MiniLM). Output: the chosen sub-network as a stand-alone generator; ``selection.json`` holds the table.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, model_validator

from ..artifact import Artifact, Format
from ..cache import cache_root, stable_hash
from ..errors import PassFailed
from ..hardware import machine_info
from ..lock import measuring
from ..metrics.diversity import diversity_inputs
from ..metrics.evaluate import eval_set, evaluate, model_data
from ..metrics.noise import eval_noise
from ..models import DFGenerator
from ..models.contract import io_spec
from ..models.dfgan import GeneratorConfig
from ..models.elastic import Subnet, elastic_forward, extract, from_factors, sample, validate_subnet
from ..models.fused import FusedConditioning
from ..models.inputs import caption_inputs
from ..models.io import load_model, save_model
from ..models.stats import macs_per_image
from ..runtimes import Deployment, openvino_runtime
from ..runtimes.openvino_ir import stable_names
from ..text import TextEncoder
from .base import Pass, PassConfig, PassContext, PassMetric, PassResult


class SelectSubnetConfig(PassConfig):
    latency_budget_ms: float | None = Field(None, gt=0, le=1e6)  # the INT8 IR's p50 at batch 1, or ...
    speedup_vs_teacher_int8: float | None = Field(None, gt=0, le=1e6)  # ... at least this much faster than that
    candidates: int = Field(24, ge=0, le=1000)  # random sub-networks besides the uniform ones
    threads: int = Field(2, ge=1, le=256)
    rounds: int = Field(5, ge=1, le=100)
    calls: int = Field(30, ge=1, le=10_000)
    subset_size: int = Field(64, ge=1, le=10_000)  # calibration pairs of each candidate's INT8 export
    val_n: int | None = Field(None, ge=10, le=100_000)  # val captions each in-budget candidate is scored on (None: all)
    alignment_drop: float = Field(0.03, ge=0, le=1)  # the quality budget: R-precision at most this below the teacher's,
    kid_max_increase: float = Field(0.15, ge=0, le=100)  # KID at most this much above (relative) ...
    min_diversity: float = Field(0.9, ge=0, le=10)  # ... diversity at least this share of the teacher's
    max_scored: int = Field(12, ge=1, le=1000)  # score at most this many in-budget candidates (the slowest ones)

    @model_validator(mode="after")
    def _one_budget(self) -> SelectSubnetConfig:
        if (self.latency_budget_ms is None) == (self.speedup_vs_teacher_int8 is None):
            raise ValueError("give exactly one of latency_budget_ms and speedup_vs_teacher_int8")
        return self


def candidate_subnets(teacher, choices: dict, n_random: int, seed: int) -> list[Subnet]:
    """The uniform sub-networks (each width choice, each depth), then ``n_random`` random ones; no repeats."""
    stages = len(teacher.channels)
    found = [from_factors(teacher, [f] * stages, k) for f in choices["width_choices"] for k in choices["convs_choices"]]
    rng = random.Random(seed)
    for _ in range(50 * n_random):
        if len(found) >= len(choices["width_choices"]) * len(choices["convs_choices"]) + n_random:
            break
        subnet = sample(teacher, choices["width_choices"], choices["convs_choices"], rng)
        if subnet not in found:
            found.append(subnet)
    return found


def int8_ir(generator: torch.nn.Module, calibration: list[dict], folder: Path, subset_size: int) -> Path:
    """The generator as the edge recipe deploys it: ONNX (fusion MLPs merged) -> OpenVINO IR -> NNCF INT8."""
    import nncf  # heavy optional backends: imported when a candidate is exported
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    model = FusedConditioning(generator.eval()).eval()
    names = ["z", "text"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(torch.from_numpy(calibration[0][n]) for n in names), str(folder / "g.onnx"),
                          input_names=names, output_names=["image"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "image": {0: "batch"}})
    ir = ov.convert_model(str(folder / "g.onnx"))
    quantized = nncf.quantize(ir, nncf.Dataset(calibration[:subset_size]), subset_size=subset_size)
    stable_names(quantized)
    ov.save_model(quantized, str(folder / "model.xml"), compress_to_fp16=False)
    return folder / "model.xml"


def time_int8(irs: dict[str, Path], example: dict, threads: int, rounds: int, calls: int, seed: int) -> dict[str, float]:
    """p50 ms per call of each IR at batch 1, timed in interleaved rounds (seeded order per round)."""
    runtimes = {name: openvino_runtime(path, deploy=Deployment(threads=threads, batch=1)) for name, path in irs.items()}
    samples: dict[str, list[float]] = {name: [] for name in irs}
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(irs)
        rng.shuffle(order)
        for name in order:
            call = runtimes[name].call
            for _ in range(3):
                call(example)
            for _ in range(calls):
                started = time.perf_counter()
                call(example)
                samples[name].append((time.perf_counter() - started) * 1e3)
    return {name: float(np.median(ms)) for name, ms in samples.items()}


def _machine() -> dict:
    """What a latency table is valid for: the CPU, its ISA as used, and the libraries that build and run the IR."""
    from importlib.metadata import version

    info = machine_info()
    return {**{k: info.get(k) for k in ("cpu", "isa", "isa_limits", "openvino_capabilities")},
            **{name: version(name) for name in ("torch", "openvino", "nncf")}}


def choose(scored: list[Subnet], quality: dict[str, dict], teacher: dict, kid_max_increase: float,
           min_diversity: float, alignment_drop: float) -> tuple[Subnet, bool]:
    """The highest val text alignment (R-precision; attribute accuracy on shapes) among ``scored`` whose KID is at
    most ``kid_max_increase`` above the teacher's and diversity at least ``min_diversity`` of it (else among all);
    and whether it is inside the whole quality budget (its alignment at most ``alignment_drop`` below too)."""
    ok = [s for s in scored if quality[s.key()]["kid"] <= teacher["kid"] * (1 + kid_max_increase)
          and quality[s.key()]["diversity"] >= min_diversity * teacher["diversity"]]
    chosen = max(ok or scored, key=lambda s: quality[s.key()]["alignment"])
    inside = chosen in ok and quality[chosen.key()]["alignment"] >= teacher["alignment"] - alignment_drop
    return chosen, inside


class SelectSubnet(Pass):
    name = "select_subnet"
    about = "a supernet's sub-network with the best val quality under a measured INT8 latency budget"
    Config = SelectSubnetConfig
    accepts = (Format.TORCH,)
    produces = Format.TORCH
    needs = ("teacher", "captions", "calibration")
    libraries = ("torch", "onnx", "openvino", "nncf")
    metrics = {"chosen_latency_ms": PassMetric("ms", "lower", "the chosen sub-network's INT8 p50, batch 1, this CPU"),
               "budget_ms": PassMetric("ms", "lower", "the latency budget it was chosen under"),
               "chosen_val_alignment": PassMetric("", "higher", "the chosen sub-network's R-precision (shapes: attribute "
                                                                 "accuracy) on val"),
               "candidates_in_budget": PassMetric("", "higher", "candidates whose latency is inside the budget")}

    def run(self, src: Artifact, out_dir: Path, ctx: PassContext) -> PassResult:
        cfg = self.config
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        supernet = load_model(src.path).eval()
        choices = getattr(supernet, "meta", {}).get("supernet")
        if not isinstance(supernet, DFGenerator) or not choices:
            raise PassFailed("select_subnet: its input must be a supernet step's artifact (put supernet: {...} "
                             "before it in the recipe)")
        teacher = ctx.teacher_model()
        t_config = GeneratorConfig.model_validate(choices["teacher"])
        subnets = candidate_subnets(t_config, choices, cfg.candidates, ctx.seed)
        for subnet in subnets:
            validate_subnet(supernet.config, subnet)
        calibration = ctx.calibration(cfg.subset_size)

        # the latency table: measured once per machine and candidate set, then reused
        key = stable_hash({"machine": _machine(), "threads": cfg.threads, "rounds": cfg.rounds, "calls": cfg.calls,
                           "subnets": [s.key() for s in subnets], "teacher": t_config.model_dump(),
                           "subset_size": cfg.subset_size})
        table_path = cache_root() / "latency" / f"{key}.json"
        if table_path.is_file():
            latency = json.loads(table_path.read_text())
            ctx.log(f"select_subnet: latency table of {len(subnets)} candidates reused ({table_path})")
        else:
            ctx.log(f"select_subnet: timing {len(subnets)} candidates and the teacher's INT8 export (batch 1, "
                    f"{cfg.threads} threads)")
            with tempfile.TemporaryDirectory() as tmp:
                irs = {"teacher_int8": int8_ir(teacher, calibration, Path(tmp) / "teacher", cfg.subset_size)}
                for i, subnet in enumerate(subnets):
                    irs[subnet.key()] = int8_ir(extract(supernet, subnet), calibration, Path(tmp) / f"c{i}",
                                                cfg.subset_size)
                    ctx.progress(i + 1, len(subnets), {"exported": subnet.key()})
                # timed alone on the machine: this step lets go of its build hold meanwhile (lock.measuring)
                with measuring(ctx.log):
                    latency = time_int8(irs, calibration[0], cfg.threads, cfg.rounds, cfg.calls, ctx.seed)
            table_path.parent.mkdir(parents=True, exist_ok=True)
            table_path.write_text(json.dumps(latency, indent=1) + "\n")
        budget = cfg.latency_budget_ms or latency["teacher_int8"] / cfg.speedup_vs_teacher_int8
        inside = sorted((s for s in subnets if latency[s.key()] <= budget), key=lambda s: -latency[s.key()])
        if not inside:
            fastest = min(subnets, key=lambda s: latency[s.key()])
            raise PassFailed(f"select_subnet: no candidate within {budget:.3f} ms (the fastest, {fastest.key()}, takes "
                             f"{latency[fastest.key()]:.3f} ms); raise the budget or add smaller width_choices")
        scored = inside[:cfg.max_scored]  # the slowest inside the budget: the most capacity it allows
        quality = self._quality(teacher, supernet, choices, scored, ctx)
        t_q = quality.pop("teacher")
        chosen, in_quality_budget = choose(scored, quality, t_q, cfg.kid_max_increase, cfg.min_diversity,
                                           cfg.alignment_drop)
        student = extract(supernet, chosen)
        save_model(out_dir, student, {**getattr(supernet, "meta", {}), "subnet": chosen.model_dump()})
        rows = [{"subnet": s.key(), "latency_ms": round(latency[s.key()], 4), "macs": macs_per_image(extract(supernet, s)),
                 "in_budget": latency[s.key()] <= budget, **quality.get(s.key(), {})} for s in subnets]
        (out_dir / "selection.json").write_text(json.dumps(
            {"budget_ms": budget, "teacher_int8_ms": latency["teacher_int8"], "teacher_val": t_q,
             "chosen": chosen.key(), "candidates": rows}, indent=1) + "\n")
        return PassResult(
            metrics={"chosen_latency_ms": latency[chosen.key()], "budget_ms": budget,
                     "chosen_val_alignment": quality[chosen.key()]["alignment"],
                     "candidates_in_budget": len(inside)},
            details={"chosen": chosen.model_dump(), "inside_quality_budget": in_quality_budget,
                     "teacher_int8_ms": latency["teacher_int8"], "candidates": len(subnets),
                     "scored": len(scored), "chosen_val": quality[chosen.key()], "teacher_val": t_q})

    def _quality(self, teacher, supernet, choices: dict, subnets: list[Subnet], ctx: PassContext) -> dict:
        """{subnet key or "teacher": {alignment, alignment_metric, kid, diversity}} on the val split."""
        cfg = self.config
        evalset = eval_set(model_data(teacher), cfg.val_n, split="val")
        io = io_spec(teacher)
        z_dim = teacher.config.z_dim
        z = eval_noise(len(evalset.captions), z_dim, ctx.seed)
        d_captions, d_z = diversity_inputs(evalset.diversity_captions, z_dim, ctx.seed)
        full = [caption_inputs(io, evalset.captions, z, TextEncoder()), caption_inputs(io, d_captions, d_z, TextEncoder())]
        shallow = full
        if choices.get("text_layers"):
            encoder = ctx.shallow_text_encoder(choices["text_layers"], choices.get("text_steps", 600),
                                               choices.get("text_lr", 3e-3), step="select_subnet")
            shallow = [{"z": full[0]["z"], **ctx.caption_inputs(evalset.captions, io, encoder)},
                       {"z": full[1]["z"], **ctx.caption_inputs(d_captions, io, encoder)}]

        def draw(fn, inputs: dict) -> np.ndarray:
            out = []
            with torch.no_grad():
                for s in range(0, len(inputs["z"]), 256):
                    out.append(fn(torch.from_numpy(inputs["z"][s:s + 256]), torch.from_numpy(inputs["text"][s:s + 256])))
            images = torch.cat(out).clamp(-1, 1).numpy()
            return np.round((images + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)

        def score(fn, inputs: list[dict]) -> dict:
            found = evaluate(draw(fn, inputs[0]), evalset, seed=ctx.seed, diversity_images=draw(fn, inputs[1]))
            align = "r_precision" if "r_precision" in found else "attr_accuracy"  # emoji: the aligner; shapes: attributes
            return {"alignment": round(float(found[align]["value"]), 5), "alignment_metric": align,
                    **{k: round(float(found[k]["value"]), 5) for k in ("kid", "diversity")}}

        result = {"teacher": score(teacher, full)}
        for i, subnet in enumerate(subnets):
            result[subnet.key()] = score(lambda zz, tt, s=subnet: elastic_forward(supernet, s, zz, tt), shallow)
            ctx.progress(i + 1, len(subnets), {"scored": subnet.key(), **result[subnet.key()]})
        return result


__all__ = ["SelectSubnet", "SelectSubnetConfig", "candidate_subnets", "choose", "int8_ir", "time_int8"]
