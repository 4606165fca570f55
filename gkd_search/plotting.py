"""The Pareto plot logged to a search's parent run: validation accuracy against p50 latency."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from .types import TrialResult


def pareto_plot(results: Sequence[TrialResult], front: Sequence[TrialResult], selected: Optional[TrialResult],
                budget_ms: float, path: Path, title: str = "") -> Path:
    """Write a PNG: every finished trial, the front (line), the budget (dashed) and the selected point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if r.status == "ok" and r.val_acc is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter([r.latency_ms_p50 for r in done], [r.val_acc for r in done], s=22, c="#8aa1b1", label="trials")
    ordered = sorted(front, key=lambda r: r.latency_ms_p50)
    ax.plot([r.latency_ms_p50 for r in ordered], [r.val_acc for r in ordered], "o-", c="#1f5f8b", ms=6,
            label="Pareto front (val acc, latency, params)")
    ax.axvline(budget_ms, ls="--", c="#c0392b", label=f"budget {budget_ms:g} ms")
    if selected is not None:
        ax.scatter([selected.latency_ms_p50], [selected.val_acc], marker="*", s=260, c="#f1c40f",
                   edgecolors="black", zorder=5, label="selected")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per request (ms, log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
