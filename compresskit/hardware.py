"""What this machine can do, and the one place that decides the training precision.

    machine = machine_info(threads=2)           # CPU model, cores, ISA flags, OpenVINO's capabilities
    precision = training_precision("auto", device)   # bf16 autocast only where the hardware has it
    with autocast(device, precision): ...       # every autocast in the package goes through here
    fast_int8()                                 # (True, "AVX512-VNNI"): INT8 runs faster than fp32 here (VNNI/AMX)

**Why a decision, not a default.** bfloat16 autocast is fast only where the hardware computes in bf16:
CPUs with AVX512-BF16 or AMX, GPUs that support it. Elsewhere PyTorch emulates it, and it is slow, not a
little slow: on a 2-core AMD EPYC with AVX2 only (no AVX-512), torch 2.13's bf16 autocast ran a small conv
net's forward and backward 26x slower than fp32 and the emoji32-v3 teacher's forward 47x slower (issue 40).
So ``bf16: auto`` (the default everywhere) means bf16 where native, fp32 elsewhere; ``true`` and ``false``
force either, and a forced bf16 on a CPU that emulates it warns with the cost measured on the spot.

**Native bf16 on a CPU** is read from two sources that must agree: the CPU's flags (``avx512_bf16`` or
``amx_bf16`` in ``/proc/cpuinfo``) and oneDNN's own check as torch sees it
(``torch.ops.mkldnn._is_mkldnn_bf16_supported``), which honours ``ONEDNN_MAX_CPU_ISA``. That env var (with
``ATEN_CPU_CAPABILITY=avx2``) makes an AVX512-BF16 machine behave as an AVX2-only one for torch, which is how
the AVX2 figures can be reproduced on the bigger CPU.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Literal

BF16 = bool | Literal["auto"]
# the ISA features that decide speed here: fp32 SIMD width, INT8 dot products (VNNI), native bf16, AMX
ISA_FLAGS = {"avx2": ("avx2",), "avx512": ("avx512f",), "vnni": ("avx512_vnni", "avx_vnni"),
             "avx512_bf16": ("avx512_bf16",), "amx": ("amx_tile", "amx_bf16", "amx_int8")}
ISA_LIMIT_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
log = logging.getLogger("compresskit")  # the CLI prints its warnings once each, one line


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", {}) where there is none (not Linux)."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> frozenset[str]:
    return _cpuinfo()[1]


def isa(flags: frozenset[str] | None = None) -> dict[str, bool]:
    """{"avx2", "avx512", "vnni", "avx512_bf16", "amx"}: which of the features that matter here the CPU has."""
    flags = cpu_flags() if flags is None else flags
    return {name: any(f in flags for f in names) for name, names in ISA_FLAGS.items()}


def isa_label(features: dict[str, bool]) -> str:
    """The one-word summary used in messages and tables: AMX, AVX512-BF16, AVX512-VNNI, AVX-512, AVX2 or older."""
    for name, label in (("amx", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("vnni", "AVX512-VNNI"),
                        ("avx512", "AVX-512"), ("avx2", "AVX2")):
        if features[name]:
            return label if name != "vnni" or features["avx512"] else "AVX2+VNNI"
    return "pre-AVX2"


def isa_limits() -> dict[str, str]:
    """The environment variables that cap the ISA oneDNN / torch use (set to reproduce a smaller CPU)."""
    return {name: os.environ[name] for name in ISA_LIMIT_VARS if os.environ.get(name)}


def _torch_has_bf16_kernels() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no fast bf16 on the CPU
        return False


def native_bf16(device_type: str = "cpu") -> tuple[bool, str]:
    """(whether ``device_type`` computes bf16 natively, what was found: "AVX512-BF16", "AVX2", "cuda ..."). """
    if device_type == "cuda":
        import torch

        found = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return found, f"cuda {torch.cuda.get_device_name() if torch.cuda.is_available() else 'absent'}"
    features = isa()
    label = isa_label(features)
    limits = isa_limits()
    if (features["avx512_bf16"] or features["amx"]) and not _torch_has_bf16_kernels():
        return False, f"{label} capped by {', '.join(f'{k}={v}' for k, v in limits.items()) or 'this torch build'}"
    return features["avx512_bf16"] or features["amx"], label


# oneDNN's ISA caps (``ONEDNN_MAX_CPU_ISA``) that still allow its INT8 dot-product kernels (VNNI, AMX)
_CAPS_WITH_INT8_DOT = ("VNNI", "BF16", "FP16", "AMX", "AVX10", "ALL", "DEFAULT")


def fast_int8() -> tuple[bool, str]:
    """(whether this CPU has INT8 dot-product instructions that OpenVINO and oneDNN use, what was found).

    VNNI (AVX512-VNNI or AVX-VNNI) or AMX: an INT8 layer runs ~2x its fp32 self. Without them OpenVINO's INT8
    kernels (``jit_avx2_I8``) emulate the dot product and can be slower than fp32: the edge recipe's 2-layer
    MiniLM on an AMD EPYC capped to AVX2 ran 0.99 ms INT8 vs 0.75 ms fp32 (0.33 vs 0.67 ms with VNNI). An ISA
    cap (``ONEDNN_MAX_CPU_ISA=AVX2``) counts as the CPU it imitates."""
    features = isa()
    label = isa_label(features)
    found = features["vnni"] or features["amx"]
    caps = {k: v for k, v in isa_limits().items() if k != "ATEN_CPU_CAPABILITY"}  # oneDNN's, which OpenVINO honours
    if found and any(not any(word in v.upper() for word in _CAPS_WITH_INT8_DOT) for v in caps.values()):
        return False, f"{label} capped by {', '.join(f'{k}={v}' for k, v in caps.items())}"
    return found, label


@dataclass(frozen=True)
class Precision:
    """The training precision chosen for one device: what was asked, what runs, and why (one line)."""

    asked: str  # "auto", "true" or "false"
    bf16: bool
    device: str
    hardware: str  # what native_bf16 found
    note: str
    warned: bool = False  # the note went to the ``compresskit`` logger as a warning (the CLI prints it once)

    @property
    def name(self) -> str:
        return "bf16 autocast" if self.bf16 else "fp32"

    def record(self) -> dict:
        """For a manifest or report: {"asked", "bf16", "device", "hardware", "note", "name"}."""
        return {**asdict(self), "name": self.name}


def training_precision(asked: BF16, device_type: str = "cpu") -> Precision:
    """bf16 autocast where ``asked`` is True, or "auto" and the device computes bf16 natively; fp32 otherwise.

    A fallback to fp32 is logged (a warning on the ``compresskit`` logger: the CLI prints it once); a forced
    bf16 on a device that emulates it runs (it was asked), with a warning that gives the measured cost.
    """
    if asked not in (True, False, "auto"):
        raise ValueError(f"bf16 must be true, false or auto, got {asked!r}")
    native, hardware = native_bf16(device_type)
    said = "auto" if asked == "auto" else str(bool(asked)).lower()
    if asked == "auto":
        bf16 = native
        note = (f"bf16 autocast: this {device_type.upper()} computes bf16 natively ({hardware})" if native else
                f"bf16 asked (auto); this {device_type.upper()} has no native bf16 ({hardware}): training in fp32")
    elif asked:
        bf16 = True
        note = f"bf16 autocast (forced; native on this {device_type.upper()}: {hardware})"
        if not native:
            slower = emulated_bf16_cost() if device_type == "cpu" else None
            cost = f"a conv step measured {slower:.1f}x the fp32 time here" if slower else "much slower than fp32"
            note = (f"bf16 forced on a {device_type.upper()} without native bf16 ({hardware}): emulated, {cost}; "
                    f"set bf16: auto or false to train in fp32")
    else:
        bf16, note = False, f"fp32 (forced; native bf16 on this {device_type.upper()}: {'yes' if native else 'no'}, {hardware})"
    warned = asked is not False and not native  # an fp32 fallback, or bf16 forced where it is emulated
    if warned:
        log.warning(note)
    return Precision(said, bf16, device_type, hardware, note, warned)


def resolved_bf16(asked: BF16, device_type: str = "cpu") -> bool:
    """What ``training_precision(asked)`` will train in, without logging: for artifact ids and cache keys."""
    return native_bf16(device_type)[0] if asked == "auto" else bool(asked)


@functools.cache
def emulated_bf16_cost() -> float | None:
    """bf16 autocast time over fp32 time of one small conv forward + backward, measured now (best of 3)."""
    import torch

    try:
        conv = torch.nn.Conv2d(32, 32, 3, padding=1)
        x = torch.randn(8, 32, 32, 32)

        def best(enabled: bool) -> float:
            times = []
            for _ in range(3):
                started = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                    out = conv(x)
                out.float().sum().backward()
                times.append(time.perf_counter() - started)
            return min(times)

        best(False)  # warm-up
        return best(True) / best(False)
    except RuntimeError:
        return None


def autocast(device, precision: Precision | bool) -> AbstractContextManager:
    """bfloat16 autocast on ``device`` (a torch.device or its type) when ``precision`` says bf16, else a no-op."""
    import torch

    enabled = precision.bf16 if isinstance(precision, Precision) else bool(precision)
    return torch.autocast(getattr(device, "type", device), dtype=torch.bfloat16, enabled=enabled)


def openvino_capabilities() -> list[str]:
    """OpenVINO's CPU ``OPTIMIZATION_CAPABILITIES`` (FP32, BF16, INT8 ...); empty where OpenVINO is absent."""
    try:
        import openvino as ov  # heavy, optional here: only the report asks
    except ImportError:
        return []
    try:
        return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except RuntimeError:
        return []


def machine_info(threads: int | None = None) -> dict:
    """What a report says about the machine it measured on; ``threads`` is what the measurements used."""
    model, _ = _cpuinfo()
    features = isa()
    native, hardware = native_bf16("cpu")
    return {"cpu": model, "cores": os.cpu_count(), "threads_used": threads, "isa": features,
            "isa_label": isa_label(features), "isa_limits": isa_limits(), "native_bf16": native,
            "bf16_hardware": hardware, "openvino_capabilities": openvino_capabilities(),
            "machine": platform.machine()}


def fingerprint(environment: dict) -> tuple:
    """What must match for two reports' latencies to be comparable: the CPU model and its ISA as used."""
    return (environment.get("cpu"), environment.get("isa_label"), tuple(sorted(environment.get("isa_limits", {}).items())))
