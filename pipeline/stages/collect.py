"""collect: load the source, validate it, split it into train / val / test (or, with
`data.folds`, test on one fold of a k-fold partition), take the training subset (the training
samples it leaves out are kept without their labels as `x_unlabelled`, for pretraining).

Each split carries its samples' identities, `id_<split>` (int64): a sample's row in the loaded
source, the rows of a source's own test split numbered after the others. Two runs that collect
one source on different splits (another `data.seed` or `data.test_fraction`) can so be paired
on the test samples they share, by identity rather than by position."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from types import ModuleType
from typing import Any

import numpy as np

import datasets
import datasets.base
import datasets.splits
from datasets.validate import check_usable, data_warnings
from pipeline.cache import Artifact
from pipeline.config import Config, DataConfig, changed_settings
from pipeline.keys import source_fingerprint
from pipeline.stages.base import RunContext, Stage

SPLITS = ("train", "val", "test")
SOURCE_OPTIONS = tuple(option.name for option in dataclasses.fields(datasets.SourceOptions))


def load_raw(source: datasets.base.Source, argument: str, options: datasets.SourceOptions, text: str) -> datasets.RawData:
    """The source's data. A plugin's loader that fails other than with a `ValueError` (its own
    message) is named, with what it raised: bad input from a plugin, not a crash of the pipeline."""
    try:
        return source.load(argument, options)
    except ValueError:
        raise
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit(0) would end the run with status 0 and no record
        if source.load.__module__.split(".")[0] == "datasets":
            raise
        where = f"{source.load.__module__}.{source.load.__qualname__}"
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {exc.__class__.__name__}: {exc}"
        raise ValueError(f"data source {text!r}: the plugin's loader {where} {what}") from None


def load_test_source(raw: datasets.RawData, data: DataConfig) -> tuple[datasets.RawData, list[str]]:
    """`raw` with `data.test_source`'s samples as its own test split, labelled in `raw`'s class
    names, and that file's warnings. The test file is validated as the training source is, and
    must match it: sample shape, columns (one-hot ones included), classes, values its dtype holds."""
    name = data.test_source
    source, argument = datasets.parse_source(name)
    test = load_raw(source, argument, data.source_options(source.reads), name)
    check_usable(test, name, min_classes=1)  # a test file may hold one class
    if raw.feature_names is not None and test.feature_names is not None and test.feature_names != raw.feature_names:
        at = next((i for i, (a, b) in enumerate(zip(raw.feature_names, test.feature_names)) if a != b), min(len(raw.feature_names), len(test.feature_names)))
        theirs, ours = (repr(names[at]) if at < len(names) else "nothing" for names in (test.feature_names, raw.feature_names))
        raise ValueError(
            f"{name}: feature {at} is {theirs} where {data.source} has {ours}; the test file needs the "
            "training file's columns in their order, and each text column the same categories"
        )
    if test.x.shape[1:] != raw.x.shape[1:]:
        raise ValueError(f"{name}: test samples have shape {test.x.shape[1:]}, {data.source}'s training samples {raw.x.shape[1:]}.")
    position = {c: raw.class_names.index(c) if c in raw.class_names else _same_number(c, raw.class_names) for c in test.class_names}
    unknown = [test.class_names[k] for k in np.unique(test.y) if position[test.class_names[k]] is None]
    if unknown:
        raise ValueError(f"{name}: classes {', '.join(map(repr, unknown[:5]))} are not among {data.source}'s classes; the network cannot predict them.")
    x = test.x.astype(raw.x.dtype, copy=False)  # float64 to float32 rounds, as training's arithmetic would
    if not np.issubdtype(raw.x.dtype, np.floating) and x is not test.x and not np.array_equal(x, test.x):
        raise ValueError(f"{name}: samples of dtype {test.x.dtype} do not fit {data.source}'s {raw.x.dtype} without changing their values.")
    relabel = np.array([-1 if position[c] is None else position[c] for c in test.class_names], dtype=raw.y.dtype)
    found = data_warnings(test, name)
    leaked = _shared_samples(raw.x, x)
    if leaked:
        found.append(f"{name}: {leaked} test samples also appear in {data.source}; their scores measure memory, not generalisation")
    return dataclasses.replace(raw, test=(x, relabel[test.y])), found


def _same_number(name: str, names: list[str]) -> int | None:
    """The position in `names` of the class that is the same number as `name` ("1.0" and "1": a
    test file's float labels beside the training file's integers), or None."""
    try:
        value = float(name)
    except ValueError:
        return None
    matches = []
    for index, other in enumerate(names):
        try:
            if float(other) == value:
                matches.append(index)
        except ValueError:
            continue
    return matches[0] if len(matches) == 1 else None


def _shared_samples(train: np.ndarray, test: np.ndarray) -> int:
    """How many of `test`'s samples are byte for byte one of `train`'s."""
    rows = lambda x: np.ascontiguousarray(x).reshape(len(x), -1).view(np.dtype((np.void, x[0].nbytes))).ravel()  # noqa: E731
    return int(np.isin(rows(test), rows(train)).sum())


def split_indices(raw: datasets.RawData, config: Config) -> dict[str, np.ndarray]:
    """Positions of each split in `raw.x`; with `use_official_test` (or `data.test_source`), the
    test split is the source's own (or the test file's). With `data.train_fraction` below 1,
    `unlabelled` holds the training split's samples the subset left out (what autoencoder
    pretraining may read without their labels)."""
    data = config.data
    if data.fixed_test:
        if raw.test is None:
            raise ValueError(f"data.use_official_test is true but {data.source} has no test split of its own.")
        datasets.splits.check_class_sizes(raw.y, raw.class_names, 2, data.source)
        train, val, _ = datasets.splits.stratified_split(raw.y, data.val_fraction, 0.0, data.seed)
    elif data.folds is not None:
        datasets.splits.check_class_sizes(raw.y, raw.class_names, 3, data.source)
        train, val, test = datasets.splits.kfold_split(raw.y, data.folds, data.fold, data.val_fraction, data.seed)
    else:
        datasets.splits.check_class_sizes(raw.y, raw.class_names, 3, data.source)
        train, val, test = datasets.splits.stratified_split(raw.y, data.val_fraction, data.test_fraction, data.seed)
    labelled = train[datasets.splits.nested_subset(raw.y[train], data.train_fraction, data.seed)]
    indices = {"train": labelled, "val": val} if data.fixed_test else {"train": labelled, "val": val, "test": test}
    if len(labelled) < len(train):
        indices["unlabelled"] = np.setdiff1d(train, labelled)
    return indices


def unseen_classes(counts: dict[str, list[int]], class_names: list[str], source: str) -> list[str]:
    """A warning when the validation or test split holds classes the training split lacks (a
    source's own test split can): the network never learns them, and each such sample is an error."""
    missing = [k for k, count in enumerate(counts["train"]) if count == 0]
    found = []
    for split in ("val", "test"):
        samples = sum(counts[split][k] for k in missing)
        if samples:
            names = ", ".join(repr(class_names[k]) for k in missing if counts[split][k])
            found.append(f"{source}: the {split} split holds {samples} samples of classes the training split lacks ({names}); the network never learns them and each counts as an error")
    return found


def _identity(text: str, data: DataConfig) -> dict[str, Any]:
    """What a source's data is, not only where: file hashes or a library version (`content`),
    and the loader's own code (`loader`), which matters most for sources registered by plugins."""
    source, argument = datasets.parse_source(text)
    return {
        "content": source.fingerprint(argument, data.source_options(source.reads)),
        "loader": source_fingerprint(inspect.getsource(source.load)),
    }


class CollectStage(Stage):
    name = "collect"
    version = "2"

    def code(self, config: Config) -> tuple[ModuleType, ...]:
        source, _ = datasets.parse_source(config.data.source)
        return (
            sys.modules[__name__],
            datasets.base,
            datasets.splits,
            sys.modules["datasets.validate"],  # the module, which `datasets.validate` (the function) hides
            sys.modules[source.load.__module__],
            *([sys.modules[datasets.parse_source(config.data.test_source)[0].load.__module__]] if config.data.test_source else []),
        )

    def settings(self, config: Config) -> dict[str, Any]:
        """The `data` settings the source reads (not, say, `data.target` for an npz file) and the
        split settings: what of the configuration the collected data depends on, without reading
        any file (an ablation compares its variants' data by these before building anything)."""
        source, _ = datasets.parse_source(config.data.source)
        unread = set(SOURCE_OPTIONS) - set(SOURCE_OPTIONS if source.reads is None else source.reads)
        # k-fold replaces the held-out test fraction; without it, the fold settings stay out of the key.
        unused = {"test_fraction"} if config.data.folds is not None else {"folds", "fold"}
        unused |= {"test_fraction"} if config.data.test_source else {"test_source"}  # keys from before the option stay
        return config.data.model_dump(mode="json", exclude=unread | unused)

    def params(self, config: Config) -> dict[str, Any]:
        """The `data` settings the source reads, the split settings (`settings`), and what
        identifies the content."""
        params = {**self.settings(config), **_identity(config.data.source, config.data)}
        if config.data.test_source:
            params["test"] = _identity(config.data.test_source, config.data)
        return params

    def describe(self, config: Config) -> str:
        return " ".join([config.data.source, *(s for s in changed_settings(config, ["data"]) if not s.startswith("data.source="))])

    def run(self, inputs: dict[str, Artifact], config: Config, context: RunContext) -> Artifact:
        source, argument = datasets.parse_source(config.data.source)
        options = config.data.source_options(source.reads)
        raw = load_raw(source, argument, options, config.data.source)
        check_usable(raw, config.data.source)
        test_warnings = []
        if config.data.test_source is not None:
            raw, test_warnings = load_test_source(raw, config.data)
        indices = split_indices(raw, config)
        arrays = {}
        unlabelled = indices.pop("unlabelled", None)
        if unlabelled is not None:  # samples only: their labels stay out of the pipeline
            arrays["x_unlabelled"], arrays["id_unlabelled"] = raw.x[unlabelled], np.asarray(unlabelled, dtype=np.int64)
        for split, index in indices.items():
            arrays[f"x_{split}"], arrays[f"y_{split}"] = raw.x[index], raw.y[index]
            arrays[f"id_{split}"] = np.asarray(index, dtype=np.int64)
        if "test" not in indices:
            test_x, test_y = raw.test
            if test_x.shape[1:] != raw.x.shape[1:]:
                raise ValueError(f"{config.data.source}: test samples have shape {test_x.shape[1:]}, training samples {raw.x.shape[1:]}.")
            arrays["x_test"], arrays["y_test"] = test_x, test_y
            arrays["id_test"] = len(raw.x) + np.arange(len(test_y), dtype=np.int64)  # after the source's own rows
        params = context.params or self.params(config)  # the file hashes computed for the key: not read again
        info = {
            "source": config.data.source,
            "kind": "image" if raw.x.ndim == 4 else "tabular",
            "class_names": raw.class_names,
            "feature_names": raw.feature_names,
            "provenance": {**raw.provenance, **params["content"]},
            **({"test_source": config.data.test_source, "test_provenance": params["test"]["content"]} if "test" in params else {}),
            "sample_shape": list(raw.x.shape[1:]),
            "dtype": str(raw.x.dtype),
            "class_counts": {
                split: np.bincount(arrays[f"y_{split}"], minlength=len(raw.class_names)).tolist() for split in SPLITS
            },
        }
        # Kept with the entry, so a cache hit shows them again (the runner warns with them).
        info["warnings"] = [*data_warnings(raw, config.data.source), *test_warnings, *unseen_classes(info["class_counts"], raw.class_names, config.data.source)]
        return Artifact(arrays, info)
