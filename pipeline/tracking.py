"""Runs in MLflow (`--track mlflow`): each run's resolved config as parameters, its per-epoch
metrics with their epoch as the step, its test metrics, each stage's cache hit or miss as tags,
and `run.json` and `history.csv` as artifacts. An ablation is a parent run (its report, summary
and figures as artifacts; every effect's mean, interval and p-values as metrics) with one child
per variant and seed.

Runs are logged from the run records after they are written, through `MlflowClient` (no global
active run), so trainings in worker processes or Ray tasks need no MLflow of their own. A run
whose training came from the cache is logged too, tagged `gainsplit.cached=true`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import RunFailed

FINAL_METRICS = ("test_accuracy", "test_loss", "best_epoch", "epochs_run", "kept_epoch")
KEPT_METRICS = ("val_accuracy", "val_loss", "train_accuracy")  # of the weights kept: logged as kept_<name>, beside the per-epoch curves
PARAM_LIMIT = 6000  # characters MLflow keeps of a parameter's value
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000  # what one MLflow log_batch call takes
REPORT_FILES = ("report.md", "report.html", "summary.json", "runs.csv")
EFFECT_FAMILIES = ("side_effects", "effects", "interactions")
METRIC_KEY_LIMIT = 200  # characters of an effect's name kept in its metric keys (MLflow takes 250)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@contextlib.contextmanager
def _file_store_refused(uri: str) -> Iterator[None]:
    """MLflow 3 refusing its file store (`file:./mlruns`) as a configuration error (exit status
    2, before any work) that says what to use instead."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if "MLFLOW_ALLOW_FILE_STORE" not in str(exc):
            raise
        raise ValueError(
            f"MLflow refuses the file store at tracking.uri={uri} (its filesystem backend is retired): use a database, "
            "e.g. tracking.uri=sqlite:///mlflow.db (the default), or a tracking server's http:// address; "
            "`mlflow migrate-filestore` moves existing runs, and MLFLOW_ALLOW_FILE_STORE=true keeps the file store."
        ) from None


class MlflowTracker:
    """Logs run records to the tracking server or store at `uri`, in experiment `experiment`."""

    def __init__(self, uri: str, experiment: str) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise ValueError("--track mlflow needs MLflow: pip install -e '.[mlflow]'.") from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store set-up chatter is not the user's business
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = uri
        with self.reached(), _file_store_refused(uri):
            self.client = MlflowClient(uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)

    @contextlib.contextmanager
    def reached(self) -> Iterator[None]:
        """MLflow refusing or not answering as `RunFailed` naming the tracking URI (exit status 1)."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except (MlflowException, OSError) as exc:
            raise RunFailed(f"MLflow at tracking.uri={self.uri} could not log: {exc.__class__.__name__}: {exc}") from exc

    def log_run(self, run_dir: Path, name: str | None = None, parent: str | None = None, tags: dict[str, str] | None = None) -> str:
        """One MLflow run from `run_dir`'s record; returns its run id."""
        from mlflow.entities import Metric, Param

        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        stages = {stage["name"]: stage for stage in record["stages"]}
        labels = {
            "gainsplit.record": str(run_dir / "run.json"),
            "gainsplit.cached": str(stages["train"]["cache"] == "hit").lower(),
            "gainsplit.train_key": stages["train"]["key"],
            **{f"gainsplit.stage.{name}": stage["cache"] for name, stage in stages.items()},
            **(tags or {}),
        }
        if parent:
            labels["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name or record["run_id"], tags=labels)
        run_id = run.info.run_id
        params = [Param(key, str(value)[:PARAM_LIMIT]) for key, value in _flatten(record["config"]).items() if key.split(".")[0] != "ablation"]
        now = int(time.time() * 1000)
        metrics = [
            Metric(column, number, now, int(row["epoch"]))
            for row in _history(run_dir)
            for column, value in row.items()
            if column != "epoch" and (number := _number(value)) is not None
        ]
        final = {**{name: name for name in FINAL_METRICS}, **{name: f"kept_{name}" for name in KEPT_METRICS}}
        metrics += [Metric(logged, number, now, 0) for name, logged in final.items() if (number := _number(record["metrics"].get(name))) is not None]
        metrics += [Metric(f"seconds.{name}", stage["seconds"], now, 0) for name, stage in stages.items()]
        self._log(run_id, metrics, params)
        self.client.log_artifact(run_id, str(run_dir / "run.json"))
        self.client.log_artifact(run_id, str(run_dir / "history.csv"))
        self.client.set_terminated(run_id)
        return run_id

    def log_ablation(self, out_dir: Path, summary: dict[str, Any]) -> str:
        """A parent run for the ablation in `out_dir` (report and figures as its artifacts) and a
        child per variant and seed; returns the parent's run id."""
        from mlflow.entities import Metric, Param

        parent = self.client.create_run(self.experiment_id, run_name=out_dir.name, tags={"gainsplit.kind": "ablation"}).info.run_id
        for run in summary["runs"]:
            tags = {"gainsplit.variant": run["variant"], "gainsplit.seed": str(run["seed"])}
            name = f"{run['variant']} seed {run['seed']}"
            if "fold" in run:
                tags["gainsplit.fold"], name = str(run["fold"]), f"{name} fold {run['fold']}"
            self.log_run(out_dir / run["run_dir"], name, parent, tags)
        now = int(time.time() * 1000)
        best = _number(summary["scores"][summary["best_variant"]]["test"]["mean"])
        metrics = [Metric(f"best.test_{summary['metric']}", best, now, 0)] if best is not None else []
        metrics += [Metric(key, value, now, 0) for key, value in effect_metrics(summary).items()]
        self._log(parent, metrics, [Param(key, str(value)[:PARAM_LIMIT]) for key, value in _flatten(summary["ablation"]).items()])
        self.client.set_tag(parent, "gainsplit.best_variant", summary["best_variant"])
        self.client.set_tag(parent, "gainsplit.metric", summary["metric"])
        for name in REPORT_FILES:
            if (out_dir / name).exists():
                self.client.log_artifact(parent, str(out_dir / name))
        if (out_dir / "plots").is_dir():
            self.client.log_artifacts(parent, str(out_dir / "plots"), "plots")
        self.client.set_terminated(parent)
        return parent


    def _log(self, run_id: str, metrics: list[Any], params: list[Any]) -> None:
        """Metrics and parameters in batches of the sizes MLflow takes."""
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=params[start : start + PARAMS_PER_BATCH])
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + METRICS_PER_BATCH])


def effect_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Every effect of the ablation (and the verdict's net gain) as MLflow metrics:
    `effect.<NN>.<name>.<mean|low|high|p|p_holm>`, the name with the characters MLflow refuses
    replaced; NaN (one seed: no interval) is left out."""
    effects = [effect for family in EFFECT_FAMILIES for effect in summary[family]]
    if summary["verdict"]["gain"] is not None:
        effects.append(summary["verdict"]["gain"])
    logged = {}
    for index, effect in enumerate(effects):
        name = re.sub(r"[^\w.\- /]", "_", effect["name"])[:METRIC_KEY_LIMIT].rstrip()
        values = {**{part: effect["summary"][part] for part in ("mean", "low", "high")}, "p": effect["p_value"], "p_holm": effect["p_holm"]}
        for part, value in values.items():
            if (number := _number(value)) is not None:
                logged[f"effect.{index:02d}.{name}.{part}"] = number
    return logged


def _history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv", newline="", encoding="utf-8") as handle:
        return [{key: _parse(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _parse(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text
