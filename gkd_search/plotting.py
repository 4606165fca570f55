"""Plots logged to MLflow: the Pareto plot of a search (validation score against p50
latency) and the layer-pair heatmaps of a trial (ABKD and STRIDE attention and dissimilarity)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from .types import TrialResult


def pareto_plot(results: Sequence[TrialResult], front: Sequence[TrialResult], selected: Optional[TrialResult],
                budget_ms: float, path: Path, title: str = "", metric: str = "accuracy",
                teacher: Optional[tuple[float, float]] = None) -> Path:
    """Write a PNG: every finished trial's validation score (``metric``) against its p50, the
    front (line), the budget (dashed), the selected point and, given ``(p50, score)``, the teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .pareto import validation_score

    done = [r for r in results if r.status == "ok" and validation_score(r) is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter([r.latency_ms_p50 for r in done], [validation_score(r) for r in done], s=22, c="#8aa1b1", label="trials")
    ordered = sorted(front, key=lambda r: r.latency_ms_p50)
    ax.plot([r.latency_ms_p50 for r in ordered], [validation_score(r) for r in ordered], "o-", c="#1f5f8b", ms=6,
            label=f"Pareto front (val {metric}, latency, params)")
    ax.axvline(budget_ms, ls="--", c="#c0392b", label=f"budget {budget_ms:g} ms")
    if teacher is not None:
        ax.scatter([teacher[0]], [teacher[1]], marker="D", s=70, c="#7f3c8d", edgecolors="black", zorder=5,
                   label="teacher")
    if selected is not None:
        ax.scatter([selected.latency_ms_p50], [validation_score(selected)], marker="*", s=260, c="#f1c40f",
                   edgecolors="black", zorder=5, label="selected")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per request (ms, log scale)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def layer_heatmaps(matrices: Mapping[str, Sequence[Sequence[float]]], directory: Path) -> list[Path]:
    """One PNG per matrix name, before and after training side by side (ABKD's Figure 4).

    ``matrices`` maps ``"<name>_before"``/``"<name>_after"`` to ``[teacher layers][student
    layers]`` rows, as :attr:`TrialResult.matrices` holds them. Returns the files written,
    ``<directory>/<name>.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = sorted({key.rsplit("_", 1)[0] for key in matrices})
    written = []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        panels = [(when, matrices[f"{name}_{when}"]) for when in ("before", "after") if f"{name}_{when}" in matrices]
        rows = len(panels[0][1])
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 1.2, min(2.5 + 0.12 * rows, 12)),
                                 dpi=110, squeeze=False)
        for ax, (when, values) in zip(axes[0], panels):
            array = np.asarray(values, dtype=float)
            image = ax.imshow(array, aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set_title(f"{name}, {when} training", fontsize=9)
            ax.set_xlabel("student layer")
            ax.set_ylabel("teacher layer")
            ax.set_xticks(range(array.shape[1]), [str(j + 1) for j in range(array.shape[1])])
            step = max(1, array.shape[0] // 16)
            ax.set_yticks(range(0, array.shape[0], step), [str(i + 1) for i in range(0, array.shape[0], step)])
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
