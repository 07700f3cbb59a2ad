"""The metrics an ablation can be read in, from stored predicted probabilities: accuracy,
balanced accuracy, macro-F1, log loss and ROC-AUC (binary): `sklearn.metrics`' numbers to the
bit. ROC-AUC is sklearn's own; the others are its arithmetic written out in numpy, since an
ablation scores every run in every metric and sklearn's argument checks took most of that time.

Intervals need each test sample's part in a score. For accuracy, balanced accuracy and log
loss the score is a mean over samples of per-sample terms, given exactly. For macro-F1 and
ROC-AUC, which are not, each sample's jackknife pseudo-value (N x score - (N - 1) x the score
without it) stands in, shifted so that they average to the score itself: their spread gives
the test samples' share of the variance, as it does for a mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pipeline.ablation.stats import Effect, missing

EPSILON = 1e-15  # probabilities are clipped to [EPSILON, 1 - EPSILON] for the log loss, as sklearn did


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # in sentences: "raised test <label> by ..."
    higher_is_better: bool
    bounds: tuple[float, float]  # the range of the score
    scale: float  # shown as score x scale ...
    unit: str  # ... in these units, with this many decimals
    digits: int

    def sentence(self, effect: Effect) -> str:
        return effect.sentence(f"test {self.label}", self.scale, self.unit, self.digits)

    def format(self, value: float | None) -> str:
        """A score for a table: accuracy-like as a percentage, log loss as it is."""
        return "n/a" if missing(value) else f"{value * self.scale:.{self.digits + 1}f}"

    @property
    def span(self) -> float:
        """How far apart two scores can be: the bound on a difference."""
        return self.bounds[1] - self.bounds[0]


METRICS = {
    "accuracy": Metric("accuracy", "accuracy", True, (0.0, 1.0), 100.0, "points", 1),
    "balanced_accuracy": Metric("balanced_accuracy", "balanced accuracy", True, (0.0, 1.0), 100.0, "points", 1),
    "macro_f1": Metric("macro_f1", "macro-F1", True, (0.0, 1.0), 100.0, "points", 1),
    "log_loss": Metric("log_loss", "log loss", False, (0.0, math.inf), 1.0, "", 3),
    "roc_auc": Metric("roc_auc", "ROC-AUC", True, (0.0, 1.0), 100.0, "points", 1),
}


def applicable(name: str, n_classes: int) -> bool:
    """ROC-AUC is defined here for two classes only; every other metric for any number."""
    return name != "roc_auc" or n_classes == 2


def score(name: str, probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The metric of predicted probabilities `(N, K)` against integer labels `(N,)`."""
    predicted = probabilities.argmax(axis=1)
    if name == "accuracy":
        return float(np.mean(labels == predicted))
    if name == "balanced_accuracy":
        confusion = _confusion(labels, predicted)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.diagonal(confusion) / confusion.sum(axis=1)
        return float(np.mean(recall[~np.isnan(recall)]))  # a class only predicted has no recall
    if name == "macro_f1":
        confusion = _confusion(labels, predicted)  # over the classes of labels and predictions
        true_positives = np.diagonal(confusion).astype(np.float64)
        return float(np.mean(2.0 * true_positives / (1.0 * confusion.sum(axis=1) + confusion.sum(axis=0))))
    if name == "log_loss":
        clipped = np.clip(probabilities, EPSILON, 1 - EPSILON)
        eps = np.finfo(clipped.dtype).eps  # sklearn clips again, in the input's precision
        chosen = np.clip(clipped, eps, 1 - eps)[np.arange(len(labels)), labels]
        if not np.isfinite(chosen).all():  # as sklearn refuses them: no score to choose a variant on
            raise ValueError("log loss of probabilities that are not finite (NaN).")
        return float(np.mean(-np.log(chosen)))
    if name == "roc_auc":
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(labels, probabilities[:, 1]))
    raise ValueError(f"Unknown metric {name!r}. Known: {', '.join(METRICS)}.")


def _confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Counts of (true, predicted) over the classes present in either, as sklearn's confusion matrix."""
    classes, codes = np.unique(np.concatenate([labels, predicted]), return_inverse=True)
    k = len(classes)
    return np.bincount(codes[: len(labels)] * k + codes[len(labels):], minlength=k * k).reshape(k, k)


def per_sample(name: str, probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each test sample's part in the score: terms whose mean is the score (exactly, or, for
    macro-F1 and ROC-AUC, recentred jackknife pseudo-values)."""
    probabilities, labels = np.asarray(probabilities, dtype=float), np.asarray(labels)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    if name == "accuracy":
        return correct
    if name == "balanced_accuracy":
        present, counts = np.unique(labels, return_counts=True)
        weight = dict(zip(present.tolist(), (len(labels) / (len(present) * counts)).tolist()))
        return correct * np.array([weight[label] for label in labels.tolist()])
    if name == "log_loss":
        return -np.log(np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON))
    leave_one_out: Callable[[np.ndarray, np.ndarray], np.ndarray] = {"macro_f1": _macro_f1_without_each, "roc_auc": _auc_without_each}[name]
    whole, n = score(name, probabilities, labels), len(labels)
    pseudo = n * whole - (n - 1) * leave_one_out(probabilities, labels)
    return pseudo - pseudo.mean() + whole


def _macro_f1_without_each(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Macro-F1 with each sample left out in turn, over the classes of the whole set."""
    predicted = probabilities.argmax(axis=1)
    classes = np.unique(np.concatenate([labels, predicted]))
    index = {c: k for k, c in enumerate(classes.tolist())}
    t, p = np.array([index[c] for c in labels.tolist()]), np.array([index[c] for c in predicted.tolist()])
    k = len(classes)
    tp = np.bincount(t[t == p], minlength=k).astype(float)
    fp = np.bincount(p[t != p], minlength=k).astype(float)
    fn = np.bincount(t[t != p], minlength=k).astype(float)
    tp_, fp_, fn_ = (np.tile(a, (len(t), 1)) for a in (tp, fp, fn))  # (N, K): the counts without sample i
    rows, hit = np.arange(len(t)), t == p
    tp_[rows[hit], t[hit]] -= 1
    fn_[rows[~hit], t[~hit]] -= 1
    fp_[rows[~hit], p[~hit]] -= 1
    denominator = 2 * tp_ + fp_ + fn_
    f1 = np.divide(2 * tp_, denominator, out=np.zeros_like(tp_), where=denominator > 0)
    return f1.mean(axis=1)


def _auc_without_each(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Binary ROC-AUC with each sample left out in turn (the Mann-Whitney count, less the sample's pairs)."""
    scores = probabilities[:, 1]
    positive = labels == 1
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    n1, n0 = len(pos), len(neg)
    # Each sample's pairs: a positive's wins over negatives, a negative's losses to positives (ties count a half).
    wins = np.searchsorted(neg, scores, side="left") + 0.5 * (np.searchsorted(neg, scores, side="right") - np.searchsorted(neg, scores, side="left"))
    losses = (n1 - np.searchsorted(pos, scores, side="right")) + 0.5 * (np.searchsorted(pos, scores, side="right") - np.searchsorted(pos, scores, side="left"))
    total = wins[positive].sum()
    without = np.where(positive, (total - wins) / np.maximum((n1 - 1) * n0, 1), (total - losses) / np.maximum(n1 * (n0 - 1), 1))
    return without
