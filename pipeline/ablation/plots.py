"""The report's figures, drawn with matplotlib (imported here only, with the Agg backend)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pipeline.ablation.stats import missing


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(curves: dict[str, dict[str, Any]], path: Path) -> Path:
    """One row per variant: accuracy (train, validation) and loss (train, validation) per epoch,
    the learning rate on a second axis, the best epoch and where validation loss turned up."""
    plt = _pyplot()
    rows = len(curves)
    figure, axes = plt.subplots(rows, 2, figsize=(11, 2.6 * rows), squeeze=False)
    for (name, curve), (accuracy_axis, loss_axis) in zip(curves.items(), axes):
        history = curve["history"]
        epochs = [row["epoch"] for row in history]
        accuracy_axis.plot(epochs, [row["train_accuracy"] for row in history], label="train")
        accuracy_axis.plot(epochs, [row["val_accuracy"] for row in history], label="validation")
        accuracy_axis.set_ylabel("accuracy")
        accuracy_axis.set_title(name, fontsize=9, loc="left")
        loss_axis.plot(epochs, [row["train_loss"] for row in history], label="train loss")
        loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
        loss_axis.set_ylabel("loss")
        rate_axis = loss_axis.twinx()
        rate_axis.plot(epochs, [row["lr"] for row in history], color="grey", linestyle=":", label="learning rate")
        rate_axis.set_ylabel("lr", color="grey")
        for axis in (accuracy_axis, loss_axis):
            axis.axvline(curve["best_epoch"], color="green", linestyle="--", linewidth=1, label=f"best epoch {curve['best_epoch']}")
            if curve.get("turned_up_at"):
                axis.axvline(curve["turned_up_at"], color="red", linestyle=":", linewidth=1, label="val loss turns up")
            axis.set_xlabel("epoch")
        accuracy_axis.legend(fontsize=7, loc="lower right")
        loss_axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def effects_chart(effects: list[dict[str, Any]], path: Path, scale: float = 100.0) -> Path:
    """Horizontal bars of effects in accuracy points with their 95% intervals."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 0.45 * len(effects) + 1.2))
    names = [effect["name"] for effect in effects]
    means = [effect["summary"]["mean"] * scale for effect in effects]
    errors = [
        [0 if missing(e["summary"]["low"]) else (e["summary"]["mean"] - e["summary"]["low"]) * scale for e in effects],
        [0 if missing(e["summary"]["high"]) else (e["summary"]["high"] - e["summary"]["mean"]) * scale for e in effects],
    ]
    colors = ["tab:blue" if e["side"] == "data" else "tab:orange" if e["side"] == "model" else "tab:grey" for e in effects]
    axis.barh(range(len(effects)), means, xerr=errors, color=colors, capsize=3)
    axis.set_yticks(range(len(effects)), [_wrap(name) for name in names], fontsize=8)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.invert_yaxis()
    axis.set_xlabel("change in test accuracy (points), 95% CI; blue: data side, orange: model side")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _wrap(label: str, width: int = 45) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def stage_times(variants: list[dict[str, Any]], path: Path) -> Path:
    """Mean seconds per stage for each variant, stacked; hatched where every run was a cache hit."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(11, 0.55 * len(variants) + 1.5))
    stages = list(variants[0]["stages"])
    left = [0.0] * len(variants)
    for stage in stages:
        widths = [v["stages"][stage]["seconds"] for v in variants]
        hatches = ["//" if v["stages"][stage]["hits"] == len(v["seeds"]) else "" for v in variants]
        bars = axis.barh(range(len(variants)), widths, left=left, label=stage)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        left = [a + b for a, b in zip(left, widths)]
    axis.set_yticks(range(len(variants)), [_wrap(v["name"]) for v in variants], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("seconds per run (mean over seeds); hatched: cache hits")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def more_data_curve(points: list[dict[str, Any]], path: Path) -> Path:
    """Test accuracy against training-set size, with 95% intervals over seeds."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    sizes = [p["train_samples"] for p in points]
    means = [p["summary"]["mean"] for p in points]
    errors = [0 if missing(p["summary"]["low"]) else p["summary"]["mean"] - p["summary"]["low"] for p in points]
    axis.errorbar(sizes, means, yerr=errors, marker="o", capsize=3)
    axis.set_xlabel("training samples")
    axis.set_ylabel("test accuracy")
    axis.set_title("What more data buys")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
