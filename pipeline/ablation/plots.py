"""The report's figures, drawn with matplotlib (imported here only, with the Agg backend)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pipeline.ablation.stats import missing
from pipeline.files import naming

ROW_INCHES = 2.8  # the learning curves' height per factor


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _over_seeds(histories: list[list[dict[str, float]]], column: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per epoch, the mean of `column` over the seeds still training then, and its min and max."""
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for row in history:
            by_epoch.setdefault(int(row["epoch"]), []).append(row[column])
    epochs = sorted(by_epoch)
    mean, low, high = [], [], []
    for values in (by_epoch[epoch] for epoch in epochs):
        mean.append(sum(values) / len(values))
        low.append(min(values))
        high.append(max(values))
    return epochs, mean, low, high


def learning_curves(groups: dict[str, dict[str, list[list[dict[str, float]]]]], path: Path) -> Path:
    """One row per factor, its variants overlaid on shared axes (the textbook's "no tricks / LR
    decay / early stopping" picture): validation accuracy, train and validation loss on a log
    scale, and the learning rate on its own panel; each line the mean over seeds with a band
    from the lowest to the highest seed."""
    plt = _pyplot()
    rows = len(groups)
    figure, axes = plt.subplots(rows, 3, figsize=(13, ROW_INCHES * rows), squeeze=False, sharex=True)
    for (title, variants), (accuracy_axis, loss_axis, rate_axis) in zip(groups.items(), axes):
        positive = False  # a log axis needs a positive loss to place (an edited history.csv may hold none)
        for index, (label, histories) in enumerate(variants.items()):
            color = f"C{index}"
            for axis, column, style in ((accuracy_axis, "val_accuracy", "-"), (loss_axis, "val_loss", "-"), (loss_axis, "train_loss", "--")):
                epochs, mean, low, high = _over_seeds(histories, column)
                positive = positive or (axis is loss_axis and any(value > 0 for value in mean))
                axis.plot(epochs, mean, color=color, linestyle=style, label=label if style == "-" and axis is accuracy_axis else None)
                axis.fill_between(epochs, low, high, color=color, alpha=0.15, linewidth=0)
            epochs, mean, _, _ = _over_seeds(histories, "lr")
            rate_axis.plot(epochs, mean, color=color)
        accuracy_axis.set_title(title, fontsize=9, loc="left")
        accuracy_axis.set_ylabel("validation accuracy")
        loss_axis.set_yscale("log" if positive else "linear")
        loss_axis.set_ylabel("loss (val solid, train dashed)")
        rate_axis.set_ylabel("learning rate")
        rate_axis.set_ylim(bottom=0)  # a constant rate reads as a level line, not as noise around it
        accuracy_axis.legend(fontsize=7, loc="lower right")
    for axis in axes[-1]:
        axis.set_xlabel("epoch")
    # Margins in inches for the labels the panels carry, set by hand: tight_layout measured
    # every tick label of every panel, much of this figure's drawing time (docs/performance.md).
    width, height = figure.get_size_inches()
    title = 0.3  # above each row, for its factor's name
    figure.subplots_adjust(
        left=0.75 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - title / height, wspace=0.28, hspace=title / (ROW_INCHES - title)
    )
    return _save(figure, path)


def effects_chart(effects: list[dict[str, Any]], path: Path, scale: float = 100.0, measure: str = "test accuracy (points)") -> Path:
    """Horizontal bars of effects (in `measure`, each value times `scale`) with their 95% intervals."""
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
    axis.set_xlabel(f"change in {measure}, 95% CI; blue: data side, orange: model side")
    figure.tight_layout()
    return _save(figure, path)


def _wrap(label: str, width: int = 45) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def stage_names(variants: list[dict[str, Any]]) -> list[str]:
    """Every stage some variant ran, in pipeline order (only variants that pretrain have `pretrain`)."""
    names: list[str] = []
    for variant in variants:
        own = list(variant["stages"])
        for position, name in enumerate(own):
            if name not in names:
                later = next((other for other in own[position + 1 :] if other in names), None)
                names.insert(names.index(later) if later else len(names), name)
    return names


NOT_RUN = {"seconds": 0.0, "hits": None}


def stage_times_figure(variants: list[dict[str, Any]]) -> Any:
    """The stage-time chart as a matplotlib figure (see `stage_times`), not yet saved or closed."""
    plt = _pyplot()
    stages = stage_names(variants)
    rows = range(len(variants))
    figure, (axis, hits_axis) = plt.subplots(
        1, 2, figsize=(12, 0.55 * len(variants) + 1.5), sharey=True, gridspec_kw={"width_ratios": [4, 0.45 * len(stages) + 0.2]}
    )
    left = [0.0] * len(variants)
    for index, stage in enumerate(stages):
        widths = [v["stages"].get(stage, NOT_RUN)["seconds"] for v in variants]
        hatches = ["//" if v["stages"].get(stage, NOT_RUN)["hits"] == len(v["seeds"]) else "" for v in variants]
        bars = axis.barh(rows, widths, left=left, label=stage, color=f"C{index}", edgecolor="black", linewidth=0.4)  # edges carry the hatching
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        left = [a + b for a, b in zip(left, widths)]
        # The hits as a table beside the bars: a stage that takes a millisecond beside a minute of
        # training is too thin to show its hatching, but its cell shows every hit.
        for row, variant in enumerate(variants):
            hits, runs = variant["stages"].get(stage, NOT_RUN)["hits"], len(variant["seeds"])
            share = hits / runs if runs and hits is not None else 0.0
            hits_axis.add_patch(plt.Rectangle((index - 0.5, row - 0.5), 1, 1, facecolor=(1 - 0.6 * share, 1 - 0.2 * share, 1 - 0.6 * share), edgecolor="white"))
            label = "-" if hits is None else f"{hits}/{runs}"
            hits_axis.text(index, row, label, ha="center", va="center", fontsize=7, gid=f"hits:{variant['name']}:{stage}")
    axis.set_yticks(list(rows), [_wrap(v["name"]) for v in variants], fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("seconds per run (mean over seeds); hatched: every run a cache hit")
    axis.legend(fontsize=8, loc="lower right")
    hits_axis.set_xlim(-0.5, len(stages) - 0.5)
    hits_axis.set_xticks(range(len(stages)), stages, fontsize=7, rotation=45)
    hits_axis.tick_params(left=False)
    hits_axis.set_title("cache hits / runs", fontsize=8)
    for spine in hits_axis.spines.values():
        spine.set_visible(False)
    figure.tight_layout()
    return figure


def stage_times(variants: list[dict[str, Any]], path: Path) -> Path:
    """Mean seconds per stage for each variant, stacked, hatched where every run was a cache hit;
    beside it, per variant and stage, how many of its runs were cache hits (green the more), so
    hits show even where training dwarfs the data stages."""
    plt = _pyplot()
    figure = stage_times_figure(variants)
    return _save(figure, path)


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
    return _save(figure, path)


def flipped_samples(rows: list[dict[str, Any]], path: Path) -> Path:
    """Per variant, a few test images it fixed and a few it broke against the baseline (same
    seed), each titled with its true class. `rows`: {"variant", "fixed", "broke"}, where
    fixed and broke are lists of (image as (H, W) or (H, W, 3) in [0, 1], label).

    The images are laid out as one mosaic on one axes: a grid of dozens of axes took matplotlib
    several times as long to lay out and draw (docs/performance.md)."""
    import numpy as np

    plt = _pyplot()
    cells = [[("fixed", item) for item in row["fixed"]] + [("broke", item) for item in row["broke"]] for row in rows]
    columns = max(1, max(len(line) for line in cells))
    height, width = next((image.shape[:2] for line in cells for _, (image, _) in line), (1, 1))
    gap = max(1, width // 8)
    title = max(2, height // 2)  # room above each image for its title
    pitch_y, pitch_x = height + title, width + gap
    mosaic = np.ones((len(rows) * pitch_y, columns * pitch_x - gap, 3))
    figure, axis = plt.subplots(figsize=(1.3 * columns + 1.5, 1.5 * len(rows)))
    for r, (row, line) in enumerate(zip(rows, cells)):
        top = r * pitch_y + title
        for c, (kind, (image, label)) in enumerate(line):
            left = c * pitch_x
            mosaic[top : top + height, left : left + width] = image[..., None] if image.ndim == 2 else image
            axis.text(left + width / 2, top - 0.5, f"{kind}: {label}", ha="center", va="bottom", fontsize=7, color="green" if kind == "fixed" else "red")
        axis.text(-gap, top + height / 2, _wrap(row["variant"]), ha="right", va="center", fontsize=7)
    axis.imshow(mosaic, vmin=0, vmax=1, interpolation="nearest")
    axis.axis("off")
    return _save(figure, path, bbox_inches="tight")


def _save(figure: Any, path: Path, **options: Any) -> Path:
    """Write `figure` to `path` as a PNG and close it; a failed write names `path`."""
    try:
        with naming(path):
            figure.savefig(path, dpi=80, **options)
    finally:
        _pyplot().close(figure)
    return path
