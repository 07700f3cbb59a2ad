"""Property-based tests: scaler parity with scikit-learn, exact inverses, canonical cache keys."""

import numpy as np
import pytest
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


# --- checkpoints: whatever a checkpoint file holds, --resume continues or sets it aside ------------


def _tiny_training(fused=True):
    """A network that trains fused, or one that trains alone with its torch optimizer (as a plugin's does)."""
    import torch

    from trainers import Split, build_model, build_optimizer
    from trainers.arrays import SoloArray, fused_array
    from trainers.loop import Member

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 4, generator=generator), torch.arange(48) % 3
    spec, optim = {"type": "mlp", "hidden": [6]}, {"name": "adam", "lr": 1e-2}

    def build():
        if fused:
            return fused_array([spec], [optim], [0], (4,), 3, torch.device("cpu"))
        torch.manual_seed(0)
        model = build_model(spec, (4,), 3)
        return SoloArray(model, build_optimizer(model.parameters(), optim))

    members = lambda: [Member(Split(x[:36], y[:36]), Split(x[36:], y[36:]), epochs=2, seed=0)]  # noqa: E731
    return build, members


def _checkpoint_state(fused):
    """A real checkpoint of the tiny training, interrupted after its first epoch."""
    import tempfile
    from pathlib import Path

    import torch

    from trainers.loop import fit_array

    class Interrupt(Exception):
        pass

    def interrupt(epoch):
        raise Interrupt

    build, members = _tiny_training(fused)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.pt"
        try:
            fit_array(build(), members(), batch_size=16, progress=False, checkpoint=path, on_epoch_end=interrupt)
        except Interrupt:
            pass
        return torch.load(path, weights_only=True)


def _paths(tree, prefix=()):
    """Every place in a nested checkpoint state (dict keys and list positions)."""
    yield prefix
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


def _replaced(tree, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        copy = dict(tree)
        if value is _DELETE and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replaced(tree[head], rest, value)
        return copy
    copy = list(tree)
    if value is _DELETE and not rest:
        del copy[head]
    else:
        copy[head] = _replaced(tree[head], rest, value)
    return type(tree)(copy) if isinstance(tree, tuple) else copy


_DELETE = object()
_STATES = {}


def _tensors():
    import torch

    shapes = st.lists(st.integers(0, 3), max_size=3)
    return st.tuples(shapes, st.sampled_from(["float32", "int64", "bool", "uint8"])).map(
        lambda spec: torch.zeros(spec[0], dtype=getattr(torch, spec[1]))
    )


_replacements = st.one_of(
    st.just(_DELETE), st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.deferred(_tensors),
)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "alone"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_whatever_a_checkpoint_holds_resume_continues_or_sets_it_aside(fused, data):
    import tempfile
    from pathlib import Path

    import torch

    from trainers.checkpoints import UnusableCheckpoint
    from trainers.loop import fit_array

    if fused not in _STATES:
        _STATES[fused] = _checkpoint_state(fused)
    state = _STATES[fused]
    places = list(_paths(state))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        place = data.draw(st.sampled_from(places), label="place")
        try:
            state = _replaced(state, place, data.draw(_replacements, label="value"))
        except (KeyError, IndexError, TypeError):  # an earlier edit removed or replaced what held this place
            continue
    build, members = _tiny_training(fused)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.pt"
        torch.save(state, path)
        try:
            (result,) = fit_array(build(), members(), batch_size=16, progress=False, checkpoint=path, resume=True)
        except UnusableCheckpoint as exc:
            assert "moved aside" in str(exc) and not path.exists() and list(Path(folder).glob("run.unusable-*.pt"))
        else:
            assert result.epochs_run == 2
