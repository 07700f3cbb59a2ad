"""The ablation report, rendered from the records alone: `report.md`, a self-contained
`report.html` (PNGs embedded), `runs.csv` and the PNGs in `plots/`."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.ablation import plots
from pipeline.ablation.scores import METRICS, Metric
from pipeline.ablation.stats import missing
from pipeline.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FILE, FLIPPED_FILE = "summary.json", "flipped.npz"  # what an ablation folder holds besides runs/
Block = tuple  # ("h2", text) | ("p", text) | ("table", headers, rows) | ("img", path, caption)
CURVE_VARIANTS = 12


def _pct(value: float | None) -> str:
    return "n/a" if missing(value) else f"{value * 100:.2f}"


def _p(value: float | None) -> str:
    return "n/a" if missing(value) else f"{value:.3g}"


def metric_of(summary: dict[str, Any]) -> Metric:
    """The metric the summary's effects are in (accuracy for summaries written before there was a choice)."""
    return METRICS[summary.get("metric", "accuracy")]


def _test_score(summary: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    return summary["scores"][variant["name"]]["test"] if "scores" in summary else variant["test_accuracy"]


def _ci(metric: Metric, score: dict[str, Any]) -> str:
    return "n/a" if missing(score["low"]) else f"[{metric.format(score['low'])}, {metric.format(score['high'])}]"


def _in(metric: Metric, score: dict[str, Any]) -> str:
    """A score with its interval, in the metric's units."""
    return f"{metric.format(score['mean'])}{'%' if metric.unit == 'points' else ''} {_ci(metric, score)}"


def _verdict(summary: dict[str, Any]) -> list[Block]:
    """The first lines: the best configuration (chosen on validation), its net gain on test, and
    how much of the gain each side bought."""
    verdict, metric = summary["verdict"], metric_of(summary)
    best = next(v for v in summary["variants"] if v["name"] == verdict["best_variant"])
    direction = "highest" if metric.higher_is_better else "lowest"
    lines = [f"**Best configuration** ({direction} mean validation {metric.label}): {best['name']}, test {metric.label} "
             f"{_in(metric, _test_score(summary, best))}."]
    baseline = next(v for v in summary["variants"] if v["name"] == verdict["baseline"])
    if baseline["settings"]:
        lines.append("The baseline: " + ", ".join(f"{key}={json.dumps(value)}" for key, value in baseline["settings"].items()) + ".")
    if verdict["gain"] is None:
        lines.append("No variant beat the baseline on validation: the baseline stands.")
    else:
        lines.append(f"Net gain: {verdict['gain']['sentence']}.")
    by_side = {e["side"]: e for e in summary["side_effects"]}
    if "data" in by_side and "model" in by_side:
        lines.append(f"From each side, measured from the baseline: {by_side['data']['sentence']}; {by_side['model']['sentence']}.")
    return [("h2", "Verdict"), ("p", " ".join(lines))]


def _epochs(change: dict[str, float] | None) -> str:
    """An effect's change in epochs trained per run, with its interval over seeds."""
    if change is None:
        return ""
    if missing(change["low"]):
        return f"{change['mean']:+.1f}"
    return f"{change['mean']:+.1f} [{change['low']:.1f}, {change['high']:.1f}]"


def _adjusted(effect: dict[str, Any]) -> dict[str, Any]:
    """An effect's summary with its adjusted interval, the one that agrees with its decision."""
    return {**effect["summary"], "low": effect["adjusted_low"], "high": effect["adjusted_high"]}


def _uncertainty_text(summary: dict[str, Any]) -> str:
    """What the intervals cover, what they leave out, and the smallest effect they can detect."""
    testing = f"p-values: {summary['multiple_testing']}." if "multiple_testing" in summary else ""
    known = summary.get("uncertainty")
    if known is None:  # a summary written before the intervals counted test samples
        return f"Intervals are 95% t-intervals over seeds. {testing}"
    text = f"95% intervals cover {', '.join(known['sources'])}"
    text += f"; fixed for every seed, so not covered: {' and '.join(known['fixed'])}. " if known["fixed"] else ". "
    if not missing(known["detectable_effect"]):
        metric = metric_of(summary)
        size = f"{known['detectable_effect'] * metric.scale:.{metric.digits}f}" + (f" {metric.unit}" if metric.unit else f" in {metric.label}")
        text += (
            f"With {known['seeds']} seeds and {known['test_samples']} test samples, an effect must be about "
            f"{size} to be found with 80% power (median over the effects). "
        )
    text += (
        "One rule decides: an effect is decided when its Holm-adjusted p-value is below 5%. Sentences give its adjusted "
        "interval, which excludes zero exactly then (at most as wide as the Bonferroni interval that covers every effect "
        "at once, which summary.json keeps); an undecided effect is indistinguishable from noise, with the seeds that "
        "would decide an effect of its size. "
    )
    return text + _looks_text(summary.get("sequential")) + testing


BOUNDARY_NAMES = {"pocock": "Pocock's", "obrien_fleming": "O'Brien and Fleming's"}


def _looks_text(looks: dict[str, Any] | None) -> str:
    """How a seeds-until-decided ablation looked, why it stopped, and what its numbers are."""
    if not looks:
        return ""
    planned = ", ".join(str(count) for count in looks["planned"])
    return (
        f"Seeds until decided: looked {looks['taken']} of {len(looks['planned'])} planned times (at {planned} seeds) and stopped at "
        f"{looks['seeds']} seeds: {looks['stopped']}. Its effects' p-values and intervals are repeated ones ({BOUNDARY_NAMES[looks['boundary']]} "
        "boundary over every planned look), so they keep their 95% wherever the ablation stopped; the variants' own scores are read "
        "at the last look alone. "
    )


SUMMARY_KEYS = (
    "ablation", "stages", "variants", "effects", "side_effects", "verdict", "best_variant", "baselines", "ensembles", "runs", "per_class_changes",
)
RECORD_KEYS = ("config", "stages", "metrics", "diagnosis", "data")


def _json_object(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """A JSON file that is an object with `keys`, or a `ValueError` naming the file and what is missing."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read {path}: {exc}") from None
    missing_keys = [key for key in keys if not isinstance(value, dict) or key not in value]
    if missing_keys:
        raise ValueError(f"{path} is not what an ablation writes: it lacks {', '.join(missing_keys)}.")
    return value


def load_runs(out_dir: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every training's run record and history, read from `<out>/runs/`."""
    runs = []
    for entry in summary["runs"]:
        run_dir = out_dir / entry["run_dir"]
        record = _json_object(run_dir / "run.json", RECORD_KEYS)
        try:
            with open(run_dir / "history.csv", newline="") as handle:
                history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        except (OSError, ValueError) as exc:
            raise ValueError(f"Cannot read {run_dir / 'history.csv'}: {exc}") from None
        runs.append({**entry, "record": record, "history": history})
    return runs


RUN_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_accuracy", "best_epoch", "epochs_run", "stop_reason")


def runs_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per training: variant, seed (and fold, under k-fold), run folder, its metrics,
    diagnosis, and each stage's seconds and cache hit or miss (what `runs.csv` holds)."""
    import pandas as pd

    rows = []
    for run in runs:
        record = run["record"]
        row = {"variant": run["variant"], "seed": run["seed"], **({"fold": run["fold"]} if "fold" in run else {}), "run_dir": run["run_dir"]}
        row.update({name: record["metrics"].get(name) for name in RUN_METRICS})
        row["diagnosis"] = record["diagnosis"]["verdict"]
        for stage in record["stages"]:
            row[f"{stage['name']}_seconds"] = stage["seconds"]
            row[f"{stage['name']}_cache"] = stage["cache"]
        rows.append(row)
    return pd.DataFrame(rows)


def _curve_groups(summary: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, dict[str, list[list[dict[str, float]]]]]:
    """Per factor, the baseline and each variant that changes only that factor, every seed's
    history; a list design is one group of its variants."""
    histories: dict[str, list[list[dict[str, float]]]] = {}
    for run in runs:
        histories.setdefault(run["variant"], []).append(run["history"])
    variants = summary["variants"]
    baseline = variants[0]["name"]
    groups = {}
    for key in summary["ablation"]["factors"] if summary["ablation"]["design"] != "list" else ():
        changed = [v["name"] for v in variants if v["changed"] == [key]]
        if changed:
            groups[key] = {baseline: histories[baseline], **{name: histories[name] for name in changed}}
    return groups or {"variants": {v["name"]: histories[v["name"]] for v in variants[:CURVE_VARIANTS]}}


def _per_class_table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """The analysis's per-class changes against the baseline as a table, in points."""
    changes = summary["per_class_changes"]
    if not changes:
        return None
    classes = list(next(iter(changes.values())))
    return ["variant", *classes], [[name, *[f"{row[c] * 100:+.1f}" for c in classes]] for name, row in changes.items()]


def _flipped_rows(out_dir: Path) -> list[dict[str, Any]]:
    """`flipped.npz` (written by the analysis) as the rows `plots.flipped_samples` draws."""
    import numpy as np

    path = out_dir / FLIPPED_FILE
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as flipped:
        images, labels, variants, kinds = (flipped[name] for name in ("images", "labels", "variants", "kinds"))
    rows: dict[str, dict[str, Any]] = {}
    for image, label, variant, kind in zip(images, labels, variants, kinds):
        row = rows.setdefault(str(variant), {"variant": str(variant), "fixed": [], "broke": []})
        row[str(kind)].append((image[..., 0] if image.shape[2] == 1 else image, str(label)))
    return list(rows.values())


def _more_data_points(summary: dict[str, Any]) -> list[dict[str, Any]]:
    factors = summary["ablation"]["factors"]
    if "data.train_fraction" not in factors:
        return []
    points = [
        {"train_samples": v["train_samples"], "summary": v["test_accuracy"]}
        for v in summary["variants"]
        if v["changed"] in ([], ["data.train_fraction"])
    ]
    return sorted(points, key=lambda p: p["train_samples"])


def build_blocks(out_dir: Path, summary: dict[str, Any], runs: list[dict[str, Any]], to: Path) -> list[Block]:
    """The report's blocks from the ablation folder `out_dir`, its figures drawn into `to`/plots."""
    plot_dir = to / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    variants = summary["variants"]
    blocks: list[Block] = [("h1", "Ablation report")]
    seeds, metric = summary["ablation"]["seeds"], metric_of(summary)
    others = ", ".join(name for name in summary.get("by_metric", {}) if name != metric.name)
    blocks.append(("p", f"{len(variants)} variants x {len(seeds)} seeds ({summary['ablation']['design']} design). "
                        f"Effects in test {metric.label}" + (" (percentage points)" if metric.unit == "points" else "")
                        + (f"; `python -m pipeline report <folder> --metric NAME` shows them in {others}" if others else "")
                        + ". Effects are paired by seed and test sample. " + _uncertainty_text(summary)))

    sides = summary["side_effects"]
    if "verdict" in summary:
        blocks[1:1] = _verdict(summary)
    if sides:
        blocks.append(("h2", "Where the gain came from"))
        blocks += [("p", effect["sentence"].capitalize() + ".") for effect in sides]
    interactions = summary.get("interactions", [])
    if summary["effects"]:
        blocks.append(("h2", "Effect of each change"))
        blocks += [("p", effect["sentence"].capitalize() + ".") for effect in summary["effects"]]
        if interactions:
            blocks.append(("h2", "Two-factor interactions"))
            blocks += [("p", effect["sentence"].capitalize() + ".") for effect in interactions]
        every = sides + summary["effects"] + interactions
        rows = [
            [e["name"], e["side"], metric.format(e["summary"]["mean"]), _ci(metric, e["summary"]), _ci(metric, _adjusted(e)),
             _p(e["p_value"]), _p(e["p_holm"]), "yes" if e["decided"] else "no", e.get("pairing", "per sample"), _epochs(e.get("epochs"))]
            for e in every
        ]
        headers = ["effect", "side", f"change ({metric.unit or metric.label})", "95% CI (per comparison)", "adjusted CI (Holm)",
                   "p", "p (Holm)", "decided", "paired", "epochs (95% CI)"]
        blocks.append(("table", headers, rows))
        blocks.append(("p", "Epochs: each effect's change in epochs trained per run, the same contrast over one number per run "
                            "with a 95% t-interval over seeds (cost, not adjusted: it decides nothing). Every epoch of one network "
                            "on one dataset costs about the same, so it stands for training time, which a fused run's seconds cannot "
                            "give (they are its share of the array's)."))
        measure = f"test {metric.label}" + (f" ({metric.unit})" if metric.unit else "")
        drawn = [{**e, "summary": _adjusted(e), "side": e["side"] if e["decided"] else "undecided"} for e in every]
        chart = plots.effects_chart(drawn, plot_dir / "effects.png", metric.scale, measure)
        blocks.append(("img", chart, f"Effects on test {metric.label} with their adjusted intervals; grey: not decided"))

    blocks.append(("h2", "Variants"))
    stage_names = plots.stage_names(variants)
    rows = []
    for v in variants:
        own = _test_score(summary, v)
        timing = [f"{v['stages'][s]['seconds']:.2f} ({v['stages'][s]['hits']} hit)" if s in v["stages"] else "-" for s in stage_names]
        accuracy = [] if metric.name == "accuracy" else [_pct(v["test_accuracy"]["mean"])]
        rows.append([v["name"], metric.format(own["mean"]), metric.format(own["std"]), _ci(metric, own),
                     *accuracy, f"{v['test_loss']['mean']:.4f}", f"{v['epochs_run']:.1f}", *timing, v["diagnosis"]])
    headers = ["variant", f"test {metric.label}", "std", "95% CI", *([] if metric.name == "accuracy" else ["test acc"]), "test loss", "epochs",
               *[f"{s} s" for s in stage_names], "diagnosis"]
    blocks.append(("table", headers, rows))
    folds = summary["ablation"].get("resampling", {}).get("kind") == "kfold"
    blocks.append(("p", "Seconds per stage are means over the seeds" + (" (each seed's folds added)" if folds else "")
                        + "; a training fused with others is charged its share "
                        "of the array's time (the array's seconds over its members), so the column adds up to what the "
                        "ablation spent, not to what one training alone would take."))

    blocks.append(("h2", "Algorithm selection and ensembles"))
    blocks.append(("p", f"The best variant is chosen by mean validation {metric.label}, the top variants of the ensemble by "
                        "mean validation accuracy; every figure below is test accuracy."))
    best = next(v for v in variants if v["name"] == summary["best_variant"])
    rows = [[f"network: {best['name']} (best variant by validation, mean of seeds)", _pct(best["test_accuracy"]["mean"])]]
    for baseline in summary["baselines"]:
        data_of = baseline["data_of_variant"]
        rows += [[f"{name} (data of '{data_of}')", _pct(score["test_accuracy"]) + (f" ({score['note']})" if "note" in score else "")]
                 for name, score in baseline["models"].items()]
    ensembles = summary["ensembles"]
    rows += [[e["label"], _pct(e["test_accuracy"]) + (f" ({e['note']})" if "note" in e else "")] for e in ensembles["per_variant"].values()]
    if ensembles["top_k"]:
        rows.append([ensembles["top_k"]["label"], _pct(ensembles["top_k"]["test_accuracy"])])
    blocks.append(("table", ["model", "test acc"], rows))

    points = _more_data_points(summary)
    if len(points) > 1:
        blocks.append(("h2", "What more data buys"))
        blocks.append(("img", plots.more_data_curve(points, plot_dir / "more_data.png"), "Test accuracy against training-set size"))

    blocks.append(("h2", "Diagnosis"))
    blocks.append(("p", "Per variant, the verdict most seeds share (read at the epoch whose weights each run kept, with train "
                        "accuracy measured in eval mode, signs counted only beyond the validation set's noise), and the advice "
                        "of a seed with that verdict. A variant is unstable when some seeds collapsed far below the others."))
    for v in variants:
        detail = v["diagnosis_detail"]
        verdicts = ", ".join(f"{n} {verdict}" for verdict, n in detail["counts"].items())
        caveats = "".join(f" {caveat}" for caveat in detail.get("caveats", []))
        blocks.append(("p", f"**{v['name']}**: {v['diagnosis']} ({verdicts}; advice from seed {detail['advice_seed']}). {detail['advice']}{caveats}"))
    blocks.append(("h2", "Learning curves"))
    blocks.append(("img", plots.learning_curves(_curve_groups(summary, runs), plot_dir / "learning_curves.png"),
                   "Per factor, the baseline and the variant that changes it, overlaid: validation accuracy, loss "
                   "(log scale; validation solid, train dashed) and learning rate per epoch; lines are means over seeds, "
                   "bands span the lowest to the highest seed"))
    if summary.get("flips"):
        blocks.append(("h2", "Test samples each change fixed and broke"))
        blocks.append(("p", "Against the baseline with the same seed, mean over seeds: a small net effect can hide many samples changing sides."))
        rows = [[name, f"{c['fixed']:.1f}", f"{c['broke']:.1f}", f"{c['fixed'] - c['broke']:+.1f}", c.get("pairing", "per sample")]
                for name, c in summary["flips"].items()]
        blocks.append(("table", ["variant", "fixed", "broke", "net", "samples compared"], rows))
        flipped = _flipped_rows(out_dir)
        if flipped:
            shown = f" (the first {len(flipped)} of the {len(summary['flips'])} changes)" if len(flipped) < len(summary["flips"]) else ""
            blocks.append(("img", plots.flipped_samples(flipped, plot_dir / "flipped.png"),
                           f"A few test images each change fixed (green) and broke (red) against the baseline with the same seed, "
                           f"with their true class{shown}"))
    per_class = _per_class_table(summary)
    if per_class:
        blocks.append(("h2", "Which classes each change moved"))
        blocks.append(("p", "Test accuracy per class against the baseline, in points, mean over seeds."))
        blocks.append(("table", *per_class))

    blocks.append(("h2", "Time and cache"))
    rows = [[name, counts["built"], counts["hit"]] for name, counts in summary["stages"].items()]
    blocks.append(("table", ["stage", "built", "cache hits"], rows))
    blocks.append(("img", plots.stage_times(variants, plot_dir / "stage_times.png"), "Seconds per stage"))
    return blocks


def to_markdown(blocks: list[Block], out_dir: Path) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += [f"{'#' if kind == 'h1' else '##'} {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1].relative_to(out_dir).as_posix()})", ""]
    return "\n".join(lines)


# Click a column header to sort its table by it (numbers as numbers, "n/a" last); click again to reverse.
SORT_SCRIPT = """
document.querySelectorAll("table").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (header, column) {
    header.title = "sort";
    header.addEventListener("click", function () {
      var rows = Array.from(table.rows).slice(1);
      var up = header.dataset.up !== "1";
      header.dataset.up = up ? "1" : "0";
      var key = function (row) { var text = row.cells[column].textContent; var n = parseFloat(text); return isNaN(n) ? text : n; };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return typeof x === "number" ? -1 : 1; }
        return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
      });
      rows.forEach(function (row) { row.parentNode.appendChild(row); });
    });
  });
});
"""


def to_html(blocks: list[Block]) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            text = html.escape(block[1])
            parts = text.split("**")
            text = "".join(f"<b>{part}</b>" if i % 2 else part for i, part in enumerate(parts))
            body.append(f"<p>{text}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "img":
            data = base64.b64encode(block[1].read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}"><figcaption>{html.escape(block[2])}</figcaption></figure>')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}th{cursor:pointer;background:#f4f4f4}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Ablation report</title><style>{style}</style></head>"
        f"<body>{''.join(body)}<script>{SORT_SCRIPT}</script></body></html>"
    )


def read_summary(out_dir: str | Path, metric: str | None = None) -> dict[str, Any]:
    """`<out>/summary.json`, read in the ablation's metric or in `metric` (every metric is read
    at ablate time); a `ValueError` names the file and what is wrong with it."""
    summary_path = Path(out_dir) / SUMMARY_FILE
    if not summary_path.exists():
        raise ValueError(f"{out_dir} holds no {SUMMARY_FILE}: is it an ablation folder?")
    summary = _json_object(summary_path, SUMMARY_KEYS)
    effects = [effect for key in ("effects", "side_effects") for effect in summary[key]]
    if any(not isinstance(effect, dict) or "decided" not in effect for effect in effects):
        raise ValueError(
            f"{summary_path} was written by an older gainsplit, before effects were decided by their adjusted p-values: "
            "run the ablation again (its trainings are cached) to read it."
        )
    if metric is None:
        return summary
    readings = summary.get("by_metric", {})
    if metric not in readings:
        known = ", ".join(readings) or "accuracy only (written before other metrics were read)"
        raise ValueError(f"{summary_path} has no reading in metric {metric!r}; it has: {known}.")
    return {**summary, **readings[metric]}


def render(out_dir: str | Path, metric: str | None = None, to: str | Path | None = None) -> Path:
    """Write the report files (`report.md`, `report.html`, `runs.csv`, `plots/`) from the
    ablation folder's summary and run records into `to`, in the ablation's metric or in
    `metric`; nothing trains. `to` defaults to the folder itself, and for another metric than
    the ablation's to `<folder>/by-<metric>/`, beside the report in its own. Returns `report.md`'s path."""
    out_dir = Path(out_dir)
    summary = read_summary(out_dir, metric)
    if to is None:
        to = out_dir if metric is None or metric == read_summary(out_dir).get("metric", "accuracy") else out_dir / f"by-{metric}"
    to = Path(to)
    runs = load_runs(out_dir, summary)
    to.mkdir(parents=True, exist_ok=True)
    try:
        table = runs_table(runs).to_csv(index=False)
        blocks = build_blocks(out_dir, summary, runs, to)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a field of the wrong kind: an edited file
        raise ValueError(
            f"{out_dir / SUMMARY_FILE} (or a run record it lists) does not hold what an ablation writes "
            f"({exc.__class__.__name__}: {exc}); run the ablation again to write it anew (its trainings are cached)."
        ) from exc
    write_atomic(to / "runs.csv", table)
    write_atomic(to / "report.html", to_html(blocks))
    report = to / "report.md"
    write_atomic(report, to_markdown(blocks, to))
    return report
