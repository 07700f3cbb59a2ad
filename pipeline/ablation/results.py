"""An ablation's results as an object with pandas DataFrames, read from what its analysis wrote
(`summary.json` and the run records): what `pipeline.ablate` and `pipeline.load_ablation`
return, so an ablation run from the command line and one run from a notebook read alike."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.ablation.report import load_runs, read_summary, render, runs_table
from pipeline.ablation.scores import METRICS

if TYPE_CHECKING:
    import pandas as pd

EFFECT_KINDS = (("side_effects", "side"), ("effects", "factor"), ("interactions", "interaction"))
EFFECT_COLUMNS = (
    "effect", "kind", "side", "condition", "mean", "low", "high", "adjusted_low", "adjusted_high", "simultaneous_low",
    "simultaneous_high", "p", "p_holm", "decided", "detectable", "seeds_to_decide", "epochs", "epochs_low", "epochs_high", "sentence",
)


def _effect_row(effect: dict[str, Any], kind: str) -> dict[str, Any]:
    summary = effect["summary"]
    values = {
        "mean": summary["mean"], "low": summary["low"], "high": summary["high"],
        **{name: effect[name] for name in ("adjusted_low", "adjusted_high", "simultaneous_low", "simultaneous_high")},
        "p": effect["p_value"], "p_holm": effect["p_holm"], "detectable": effect["detectable"],
    }
    epochs = effect.get("epochs") or {}  # absent from summaries written before epochs were counted
    values |= {"epochs": epochs.get("mean"), "epochs_low": epochs.get("low"), "epochs_high": epochs.get("high")}
    values = {name: math.nan if value is None else value for name, value in values.items()}
    return {
        "effect": effect["name"], "kind": kind, "side": effect["side"], "condition": effect["condition"], **values,
        "decided": effect["decided"], "seeds_to_decide": effect["seeds_to_decide"], "sentence": effect["sentence"],
    }


class Ablation:
    """A finished ablation: `effects`, `variants` and `runs` as DataFrames, the `verdict`, and
    `report()` to render it. Scores and effects are in the metric's own units (accuracy as a
    fraction: 0.012 is 1.2 points); intervals are 95%, over the sources of variation
    `uncertainty` names; `decided` follows the Holm-adjusted p-value of the whole family."""

    def __init__(self, folder: Path, summary: dict[str, Any], runs: list[dict[str, Any]]) -> None:
        self.folder = folder
        self.summary = summary
        self._runs = runs
        self.tracking_id: str | None = None  # the MLflow parent run it was logged to, when tracked

    @classmethod
    def load(cls, folder: str | Path, metric: str | None = None) -> Ablation:
        """The ablation in `folder` (written by `ablate`, from Python or the command line), read
        in its own metric or in `metric`."""
        folder = Path(folder)
        summary = read_summary(folder, metric)
        return cls(folder, summary, load_runs(folder, summary))

    @property
    def metric(self) -> str:
        return self.summary.get("metric", "accuracy")

    @property
    def best_variant(self) -> str:
        """The variant with the best mean validation score (chosen on validation, reported on test)."""
        return self.summary["best_variant"]

    @property
    def uncertainty(self) -> dict[str, Any]:
        """Which sources of variation the intervals cover and which are fixed, seeds, test samples."""
        return self.summary["uncertainty"]

    @property
    def verdict(self) -> str:
        """The net gain of the best variant over the baseline, in one sentence."""
        verdict = self.summary["verdict"]
        if verdict["gain"] is None:
            return f"best variant on validation: the baseline {verdict['baseline']!r}"
        return verdict["gain"]["sentence"]

    @property
    def effects(self) -> pd.DataFrame:
        """One row per effect: the data-side, model-side and combined effects, each factor's effect
        (`condition` says what it is conditional on), the interactions and the verdict's net gain,
        with interval, p-value, Holm-adjusted p-value and whether it is `decided`."""
        import pandas as pd

        rows = [_effect_row(effect, kind) for key, kind in EFFECT_KINDS for effect in self.summary[key]]
        if self.summary["verdict"]["gain"] is not None:
            rows.append(_effect_row(self.summary["verdict"]["gain"], "verdict"))
        frame = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
        frame.attrs["metric"] = self.metric
        return frame

    @property
    def variants(self) -> pd.DataFrame:
        """One row per variant (the baseline first): its settings, test score (mean, std and
        interval), mean validation score, test loss, epochs run, training samples, diagnosis."""
        import pandas as pd

        factors = list(self.summary["ablation"].get("factors") or {})
        rows = []
        for variant in self.summary["variants"]:
            test, validation = (self.summary["scores"][variant["name"]][split] for split in ("test", "validation"))
            rows.append({
                "variant": variant["name"],
                **{key: variant["settings"].get(key) for key in factors},
                "seeds": len(variant["seeds"]),
                "test_mean": test["mean"], "test_std": test["std"], "test_low": test["low"], "test_high": test["high"],
                "val_mean": validation["mean"],
                "test_loss": variant["test_loss"]["mean"],
                "epochs_run": variant["epochs_run"],
                "train_samples": variant["train_samples"],
                "diagnosis": variant["diagnosis"],
            })
        frame = pd.DataFrame(rows)
        frame.attrs["metric"] = self.metric
        return frame

    @property
    def runs(self) -> pd.DataFrame:
        """One row per training: variant, seed, run folder, metrics, diagnosis, seconds and cache
        hit or miss per stage."""
        return runs_table(self._runs)

    def in_metric(self, metric: str) -> Ablation:
        """The same ablation read in another metric (every metric was read when it ran)."""
        return Ablation.load(self.folder, metric)

    def report(self, folder: str | Path | None = None, metric: str | None = None) -> Path:
        """Render `report.md`, `report.html`, `runs.csv` and the figures into `folder` (default:
        the ablation's own), in the ablation's metric or `metric`; returns `report.md`'s path."""
        return render(self.folder, metric or self.metric, folder)

    def __repr__(self) -> str:
        return f"Ablation({str(self.folder)!r}: {len(self.summary['variants'])} variants, {len(self._runs)} runs; {self.verdict})"

    def _repr_html_(self) -> str:
        """The verdict and the effects table, for a notebook."""
        metric = METRICS[self.metric]
        table = self.effects[["effect", "side", "mean", "adjusted_low", "adjusted_high", "p_holm", "decided"]]
        names = {"mean": f"change ({metric.unit or metric.label})", "adjusted_low": "adjusted low", "adjusted_high": "adjusted high", "p_holm": "p (Holm)"}
        table = table.rename(columns=names)
        scaled = {column: metric.format for column in table.columns[2:5]}
        return (
            f"<p><b>Ablation</b> {html.escape(str(self.folder))}: {html.escape(self.verdict)}.</p>"
            + table.to_html(index=False, formatters={**scaled, "p (Holm)": lambda p: f"{p:.3g}"})
        )
