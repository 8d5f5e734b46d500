"""Candidate names: how a report, a gate and ``bench.candidates`` refer to a recipe's steps.

Besides the steps: ``baseline`` (the teacher in torch), ``final`` (the last step), the references (the
teacher merely exported, ``bench.baselines``) and ``NAME@bf16`` for a candidate measured at bf16.
"""

from __future__ import annotations

REFERENCES = ("teacher_onnx", "teacher_openvino", "teacher_int8")
BF16_SUFFIX = "@bf16"


def step_names(pass_names: list[str]) -> list[str]:
    """A name per step: the pass name, ``name#2`` for its second use, and so on."""
    seen: dict[str, int] = {}
    names = []
    for name in pass_names:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


def measurable_names(steps: list[str], bf16: list[str]) -> list[str]:
    """Every name a gate may use for a recipe with these step names and ``bench.speed.bf16`` list."""
    names = [*step_names(steps), "final", "baseline", *REFERENCES]
    variants = [*bf16, "teacher_openvino"] if bf16 else []
    return names + [f"{name}{BF16_SUFFIX}" for name in variants]
