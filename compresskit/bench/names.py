"""Candidate names: how a report, a gate and ``bench.candidates`` refer to a recipe's steps."""

from __future__ import annotations


def step_names(pass_names: list[str]) -> list[str]:
    """A name per step: the pass name, ``name#2`` for its second use, and so on."""
    seen: dict[str, int] = {}
    names = []
    for name in pass_names:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names
