"""Other model families on the same prepared data: scikit-learn baselines for algorithm selection,
and ensembles that average predicted probabilities."""

from __future__ import annotations

import math
import time
import warnings
from typing import Sequence

import numpy as np


def sklearn_baselines(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Test accuracy and fit seconds of logistic regression, an RBF SVM, a random forest and
    k-nearest neighbours, fitted on flattened features.

    Logistic regression standardizes its features first (fitted on the training split), as
    scikit-learn advises for its lbfgs solver: on unscaled, augmented digits it took 1,674
    iterations instead of 67 (the time that cost is in docs/performance.md)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from threadpoolctl import threadpool_limits

    models = {
        "logistic regression (standardized)": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "SVM (RBF)": SVC(),
        "random forest": RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=-1),
        "k-nearest neighbours": KNeighborsClassifier(n_neighbors=max(1, min(5, len(x_train)))),
    }
    flat_train = np.asarray(x_train, dtype=np.float32).reshape(len(x_train), -1)
    flat_test = np.asarray(x_test, dtype=np.float32).reshape(len(x_test), -1)
    results = {}
    # One BLAS and OpenMP thread: these fits are too small to share out, and beside PyTorch's
    # own OpenMP threads the pools' hand-offs dominated them, many times over for logistic
    # regression and k-nearest neighbours (docs/performance.md).
    # The random forest still builds its trees on joblib's threads (`n_jobs`).
    with threadpool_limits(limits=1):
        for name, model in models.items():
            started = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(flat_train, y_train)
            except ValueError as exc:  # too little data for it (one class, fewer samples than folds): the rest still stand
                results[name] = {"test_accuracy": math.nan, "seconds": time.perf_counter() - started, "note": f"not fitted: {exc}"}
                continue
            accuracy = float((model.predict(flat_test) == y_test).mean())
            results[name] = {"test_accuracy": accuracy, "seconds": time.perf_counter() - started}
    return results


def ensemble_accuracy(probabilities: Sequence[np.ndarray], y: np.ndarray) -> float:
    """Accuracy of the class with the highest mean predicted probability across models."""
    mean = np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in probabilities]), axis=0)
    return float((mean.argmax(axis=1) == y).mean())
