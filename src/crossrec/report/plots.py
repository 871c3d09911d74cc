"""PNG plots for a run: training curves and a metric comparison with error bars over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from crossrec.io import atomic_path
from crossrec.report.summary import Stat


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]], monitor: str, path: Path
) -> Path | None:
    """Loss and the validation metric per epoch, one line per model; None if nothing was trained."""
    trained = {name: h for name, h in histories.items() if any("loss" in row for row in h)}
    if not trained:
        return None
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in trained.items():
        loss = [(row["epoch"], row["loss"]) for row in history if "loss" in row]
        ax_loss.plot(*zip(*loss, strict=True), label=name)
        val = [(row["epoch"], row[monitor]) for row in history if monitor in row]
        if val:
            ax_val.plot(*zip(*val, strict=True), marker="o", markersize=3, label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_val.set(xlabel="epoch", ylabel=f"validation {monitor}", title=f"Validation {monitor}")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_metric_comparison(
    summary: Mapping[str, Mapping[str, Stat]], metrics: Sequence[str], path: Path
) -> Path:
    """Grouped bars: one group per metric, one bar per model, error bars = std over seeds (height 0
    where a model lacks the metric)."""
    models = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) * max(1, len(models)) / 2), 4))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        stats = [summary[model].get(m, Stat(0.0, 0.0, 0)) for m in metrics]
        means, stds = [s.mean for s in stats], [s.std for s in stats]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=model)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(ylabel="test value (mean over seeds)", title="Test metrics by model")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
