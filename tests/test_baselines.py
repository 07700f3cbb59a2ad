"""scikit-learn baselines: scores on the data they are given, fitted with one BLAS/OpenMP thread."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_info

from trainers.baselines import sklearn_baselines


def test_baselines_score_the_test_split_and_fit_with_one_thread_per_pool(monkeypatch):
    threads_seen = []
    for model in (LogisticRegression, KNeighborsClassifier):
        fit = model.fit

        def watched(self, *args, _fit=fit, **kwargs):
            threads_seen.append({pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()})
            return _fit(self, *args, **kwargs)

        monkeypatch.setattr(model, "fit", watched)
    x, y = load_digits(return_X_y=True)
    x = (x / 16).reshape(-1, 1, 8, 8)  # images, as the ablation hands them over
    scores = sklearn_baselines(x[:1000], y[:1000], x[1000:1300], y[1000:1300])
    assert set(scores) == {"logistic regression (standardized)", "SVM (RBF)", "random forest", "k-nearest neighbours"}
    knn = KNeighborsClassifier(n_neighbors=5).fit(x[:1000].reshape(1000, -1), y[:1000])
    assert scores["k-nearest neighbours"]["test_accuracy"] == pytest.approx(np.mean(knn.predict(x[1000:1300].reshape(300, -1)) == y[1000:1300]))
    assert all(0.85 < s["test_accuracy"] <= 1 and s["seconds"] > 0 for s in scores.values())
    baselines_seen = threads_seen[:2]  # the third is this test's own k-nearest neighbours, fitted outside
    assert all(set(seen.values()) == {1} for seen in baselines_seen)


def test_logistic_regression_standardizes_so_the_feature_scale_does_not_change_its_score():
    """Fitted on standardized features, logistic regression converges whatever the pixels' scale:
    the same digits in 0..16 and in 0..1600 give the same test accuracy."""
    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8)
    scores = [
        sklearn_baselines(scale * x[:1000], y[:1000], scale * x[1000:1300], y[1000:1300])["logistic regression (standardized)"]["test_accuracy"]
        for scale in (1.0, 100.0)
    ]
    train, test = x[:1000].reshape(1000, -1), x[1000:1300].reshape(300, -1)
    mean, std = train.mean(axis=0), np.where(train.std(axis=0) > 0, train.std(axis=0), 1)  # StandardScaler's rule
    expected = LogisticRegression(max_iter=2000).fit((train - mean) / std, y[:1000])
    assert scores[0] == scores[1] == pytest.approx(np.mean(expected.predict((test - mean) / std) == y[1000:1300]))


def test_baselines_that_too_little_data_cannot_fit_are_noted_and_the_rest_still_stand():
    """Three training samples: k-nearest neighbours asks for as many neighbours as there are; one
    class: no classifier fits, each says why, and nothing raises (the ablation's summary is written)."""
    import math

    import numpy as np

    from trainers.baselines import sklearn_baselines

    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([0, 1, 1])
    few = sklearn_baselines(x, y, x, y)
    assert all(not math.isnan(score["test_accuracy"]) for score in few.values())
    one_class = sklearn_baselines(x, np.zeros(3, dtype=int), x, np.zeros(3, dtype=int))
    assert one_class["SVM (RBF)"]["note"].startswith("not fitted: ") and math.isnan(one_class["SVM (RBF)"]["test_accuracy"])


def test_baselines_are_fitted_once_per_data_code_and_library_version_and_then_read_from_the_cache(tmp_path, monkeypatch):
    import trainers.baselines
    from pipeline.ablation import baselines
    from pipeline.cache import CacheStore

    fitted = []

    def fake_fit(x_train, y_train, x_test, y_test, seed=0):
        fitted.append(len(x_train))
        return {"b model": {"test_accuracy": 0.5, "seconds": 1.0}, "a model": {"test_accuracy": float("nan"), "seconds": 0.1, "note": "not fitted"}}

    monkeypatch.setattr(trainers.baselines, "sklearn_baselines", fake_fit)
    store = CacheStore(tmp_path)
    arrays = {"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_test": np.zeros((2, 2)), "y_test": np.zeros(2)}
    first = baselines.baseline_scores(store, "d" * 64, lambda: arrays, "the data of 'baseline'")
    again = baselines.baseline_scores(store, "d" * 64, lambda: pytest.fail("a hit reads no data"), "the data of 'baseline'")
    assert first[1] == "miss" and again[1] == "hit" and fitted == [3]
    assert list(again[0]) == ["b model", "a model"]  # the models in their own order, though the manifest sorts its keys
    assert again[0]["b model"] == first[0]["b model"] and np.isnan(again[0]["a model"]["test_accuracy"])
    (entry,) = store.entries()
    assert entry.stage == "baselines" and entry.label == "scikit-learn baselines on the data of 'baseline'"

    assert baselines.baseline_scores(store, "e" * 64, lambda: arrays, "other data")[1] == "miss"  # other scaled data
    monkeypatch.setattr(baselines.importlib.metadata, "version", lambda name: "0.0-other")
    assert baselines.baseline_scores(store, "d" * 64, lambda: arrays, "another scikit-learn")[1] == "miss"
    monkeypatch.undo()
    monkeypatch.setattr(trainers.baselines, "sklearn_baselines", fake_fit)
    monkeypatch.setattr(baselines, "code_fingerprint", lambda modules: "changed code")
    assert baselines.baseline_scores(store, "d" * 64, lambda: arrays, "changed code")[1] == "miss"
    assert fitted == [3, 3, 3, 3]
    # A record without its scale output's digest: fitted, and nothing is kept under an empty key.
    entries = len(store.entries())
    assert baselines.baseline_scores(store, "", lambda: arrays, "no digest")[1] == "miss"
    assert len(store.entries()) == entries and fitted == [3] * 5
