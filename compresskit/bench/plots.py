"""Pareto front (latency vs KID) and the side-by-side sample grid of a report or a comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import atomic_file
from ..grid import save_grid

PARETO_X, PARETO_Y = "latency_ms_p50", "kid"


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the points no other point beats: lower-or-equal in both coordinates, lower in one."""
    front = []
    for name, (x, y) in points.items():
        dominated = any(ox <= x and oy <= y and (ox < x or oy < y) for other, (ox, oy) in points.items() if other != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def pareto_points(candidates: list[dict], label=lambda c: c["name"]) -> dict[str, tuple[float, float]]:
    """(latency p50, KID) of every report candidate that has both."""
    points = {}
    for c in candidates:
        m = c.get("metrics", {})
        if PARETO_X in m and PARETO_Y in m:
            points[label(c)] = (m[PARETO_X]["value"], m[PARETO_Y]["value"])
    return points


def pareto_plot(points: dict[str, tuple[float, float]], path: Path, title: str, references: set[str] = frozenset()
                ) -> Path:
    """Scatter of every point, labelled, with the front drawn as a step line.

    ``references`` (the teacher and its plain exports) are drawn as hollow squares: what compression is
    measured against, not what it made.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    front = pareto_front(points)
    for name, (x, y) in points.items():
        colour = "tab:red" if name in front else "tab:blue"
        if name in references:
            ax.scatter([x], [y], s=55, marker="s", facecolors="none", edgecolors=colour, zorder=3)
        else:
            ax.scatter([x], [y], s=45, color=colour, zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if len(front) > 1:
        xs, ys = zip(*(points[n] for n in front))
        ax.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="Pareto front")
    if references:
        ax.scatter([], [], s=55, marker="s", facecolors="none", edgecolors="grey", label="teacher / plain export")
    if len(front) > 1 or references:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("batch-1 latency p50 (ms, lower is better)")
    ax.set_ylabel("KID vs real train split (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def samples_grid(samples: dict[str, np.ndarray], captions: list[str], path: Path) -> Path:
    """One row per candidate (same captions and noise in every row), each tile labelled 'candidate: caption'."""
    images = np.concatenate(list(samples.values()))
    labels = [f"{name}: {caption}" for name in samples for caption in captions]
    return save_grid(path, images, labels, columns=len(captions), tile_px=96, label_lines=3)
