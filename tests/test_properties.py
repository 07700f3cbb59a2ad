"""Property-based tests: scaler parity with scikit-learn, exact inverses, canonical cache keys."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import preprocessing

from pipeline.keys import cache_key
from transforms import MinMaxScaler, StandardScaler

# Multiples of 1/8 in [-1000, 1000]: exact in binary, so both implementations see the same numbers.
values = st.integers(-8000, 8000).map(lambda v: v / 8)
tables = st.tuples(st.integers(2, 40), st.integers(1, 6)).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=values)
)


def with_constant_column(x, data):
    column = data.draw(st.integers(0, x.shape[1] - 1))
    x = x.copy()
    x[:, column] = data.draw(values)
    return x


@settings(max_examples=60, deadline=None)
@given(tables, st.data())
def test_standard_scaler_matches_sklearn(x, data):
    if data.draw(st.booleans()):
        x = with_constant_column(x, data)
    ours = StandardScaler().fit(x)
    theirs = preprocessing.StandardScaler().fit(x)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-6)
    assert np.isfinite(ours.transform(x)).all()


@settings(max_examples=60, deadline=None)
@given(tables, st.data(), st.sampled_from([(0.0, 1.0), (-1.0, 1.0)]))
def test_minmax_scaler_matches_sklearn(x, data, feature_range):
    if data.draw(st.booleans()):
        x = with_constant_column(x, data)
    ours = MinMaxScaler(feature_range).fit(x)
    theirs = preprocessing.MinMaxScaler(feature_range=feature_range).fit(x)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=1e-6, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(tables, st.sampled_from(["standard", "minmax"]))
def test_inverse_transform_recovers_the_input(x, kind):
    scaler = StandardScaler() if kind == "standard" else MinMaxScaler((-1, 1))
    restored = scaler.inverse_transform(scaler.fit_transform(x))
    np.testing.assert_allclose(restored, x, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(x).max())))


leaves = st.one_of(
    st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=64), st.text(max_size=5)
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=5), children, max_size=4)),
    max_leaves=20,
)


def reordered(tree, rng):
    """The same tree with every mapping's keys in another order."""
    if isinstance(tree, dict):
        items = [(key, reordered(value, rng)) for key, value in tree.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(tree, list):
        return [reordered(item, rng) for item in tree]
    return tree


def as_floats(tree):
    """Integers written as floats (not booleans), as a YAML file or a pydantic field may write them."""
    if isinstance(tree, dict):
        return {key: as_floats(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [as_floats(item) for item in tree]
    if isinstance(tree, int) and not isinstance(tree, bool):
        return float(tree)
    return tree


def key_of(params):
    return cache_key("stage", "1", "0" * 64, {"p": params}, {"up": "a" * 64})


@settings(max_examples=150, deadline=None)
@given(trees, st.randoms(use_true_random=False))
def test_cache_key_ignores_key_order_and_int_versus_float_text(tree, rng):
    assert key_of(reordered(tree, rng)) == key_of(tree)
    assert key_of(as_floats(tree)) == key_of(tree)


@settings(max_examples=100, deadline=None)
@given(trees, trees)
def test_cache_key_separates_different_parameters(first, second):
    if key_of(first) == key_of(second):
        assert as_floats(first) == as_floats(second) or first == second


# Manifests of any JSON shape, with and without the keys a real one has.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["files", "info", "bytes", "sha256", "x.npy", "a"]), children, max_size=3),
    max_leaves=12,
)
manifests = st.dictionaries(st.sampled_from(["files", "info", "manifest_sha256", "created", "a"]), json_values, max_size=4) | json_values


@settings(max_examples=200, deadline=None)
@given(manifests)
def test_a_malformed_manifest_is_a_corrupt_entry_never_a_traceback(manifest):
    import json
    import tempfile
    from pathlib import Path

    from pipeline.cache import CacheStore

    with tempfile.TemporaryDirectory() as root:
        store = CacheStore(root)
        folder = store.entry_dir("scale", "a" * 64)
        folder.mkdir(parents=True)
        (folder / "x.npy").write_bytes(b"\x93NUMPY")
        (folder / "meta.json").write_text(json.dumps(manifest))
        assert isinstance(store.verify("scale", "a" * 64), str)  # what is wrong, in words
        assert [entry.key for entry in store.entries()] == ["a" * 64]
        assert Path(root, "scale", "a" * 64).exists()
