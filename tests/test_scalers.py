import numpy as np
import pytest
import torch
from sklearn import datasets as skdata
from sklearn import preprocessing

from transforms import MinMaxScaler, NotFittedError, StandardScaler

DATASETS = {
    "digits": skdata.load_digits().data,
    "wine": skdata.load_wine().data,
    "breast_cancer": skdata.load_breast_cancer().data,
}


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: StandardScaler(), lambda: preprocessing.StandardScaler()),
        (lambda: MinMaxScaler(), lambda: preprocessing.MinMaxScaler()),
        (lambda: MinMaxScaler((-1, 1)), lambda: preprocessing.MinMaxScaler((-1, 1))),
    ],
)
def test_parity_with_sklearn_per_feature(name, ours, theirs):
    x = DATASETS[name]
    train, test = x[::2], x[1::2]
    mine, reference = ours().fit(train), theirs().fit(train)
    np.testing.assert_allclose(mine.transform(test), reference.transform(test), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mine.scale_, reference.scale_, rtol=1e-6)
    np.testing.assert_allclose(mine.inverse_transform(mine.transform(test)), test, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("constant", [0.0, 1.0, 100.0])
def test_constant_feature_gets_scale_one_and_no_nan(dtype, constant):
    x = np.column_stack([np.full(20, constant), np.arange(20.0)]).astype(dtype)
    for scaler in (StandardScaler(), MinMaxScaler()):
        out = scaler.fit_transform(x)
        assert scaler.scale_[0] == 1.0
        assert np.isfinite(out).all()


def test_dtype_and_kind_follow_the_input():
    x = np.arange(24, dtype=np.uint8).reshape(6, 4)
    assert StandardScaler().fit_transform(x).dtype == np.float32
    assert StandardScaler().fit_transform(x.astype(np.float64)).dtype == np.float64
    tensor_out = StandardScaler().fit_transform(torch.from_numpy(x))
    assert isinstance(tensor_out, torch.Tensor) and tensor_out.dtype == torch.float32


def test_per_channel_statistics_on_images():
    images = np.random.default_rng(0).normal(size=(10, 3, 4, 4)) * np.array([1, 5, 10])[None, :, None, None]
    scaler = StandardScaler(axis="channel").fit(images)
    assert scaler.mean_.shape == (3,)
    out = scaler.transform(images)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-12)


def test_global_axis_uses_one_statistic():
    scaler = MinMaxScaler(axis="global").fit(np.array([[0.0, 10.0], [5.0, 2.0]]))
    np.testing.assert_allclose(scaler.transform(np.array([[10.0, 0.0]])), [[1.0, 0.0]])


def test_read_only_memmap_input_is_not_modified(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(12.0).reshape(4, 3))
    x = np.load(path, mmap_mode="r")
    StandardScaler().fit_transform(x)
    np.testing.assert_array_equal(x, np.arange(12.0).reshape(4, 3))


def test_state_dict_round_trip():
    x = DATASETS["wine"]
    scaler = MinMaxScaler((-1, 1)).fit(x)
    restored = MinMaxScaler().load_state_dict(scaler.state_dict())
    np.testing.assert_array_equal(restored.transform(x), scaler.transform(x))
    assert restored.feature_range == (-1.0, 1.0)


@pytest.mark.parametrize(
    "action, pattern",
    [
        (lambda: StandardScaler().transform(np.ones((2, 2))), NotFittedError),
        (lambda: StandardScaler().fit(np.ones((3, 5))).transform(np.ones((3, 4))), r"\(4,\).*fitted with.*\(5,\)"),
        (lambda: StandardScaler().fit(np.array([[1.0, np.nan]])), r"NaN at index \(0, 1\) \(feature 1\)"),
        (lambda: StandardScaler(axis="channel").fit(np.array([[[1.0]], [[np.inf]]])), r"inf .*channel 0"),
        (lambda: StandardScaler().fit(np.empty((0, 3))), r"empty"),
        (lambda: StandardScaler().fit(np.arange(5.0)), r"at least 2-D"),
        (lambda: StandardScaler(axis="pixel"), r"'axis' parameter"),
        (lambda: MinMaxScaler((1, 0)), r"minimum < maximum"),
        (lambda: StandardScaler().fit(np.array([["a"]], dtype=object)), r"numeric"),
    ],
)
def test_bad_input_names_the_problem(action, pattern):
    if isinstance(pattern, type):
        with pytest.raises(pattern):
            action()
    else:
        with pytest.raises(ValueError, match=pattern):
            action()


def test_complex_numbers_are_refused_not_cut_to_their_real_part():
    with pytest.raises(ValueError, match="Expected real numbers, got an array of dtype complex128"):
        StandardScaler().fit(np.array([[1 + 5j, 2], [3 - 5j, 4]]))
    with pytest.raises(ValueError, match="Expected real numbers, got a tensor of dtype torch.complex64"):
        StandardScaler().fit(torch.ones(3, 2, dtype=torch.complex64))


def test_a_state_whose_statistics_disagree_with_its_shape_is_refused_on_load():
    scaler = StandardScaler().fit(np.arange(12.0).reshape(4, 3))
    state = scaler.state_dict()
    state["scale_"] = [1.0] * 7
    with pytest.raises(ValueError, match=r"State of StandardScaler: 'scale_' has shape \(7,\) but n_features_in_ says \(3,\)"):
        StandardScaler().load_state_dict(state)


def _reference(scaler, x):
    """The scaler's map computed the plain way: float64 arithmetic on every value, then float32."""
    values = x.astype(np.float64)
    if isinstance(scaler, StandardScaler):
        shape = (1, -1, *[1] * (x.ndim - 2)) if scaler.axis == "channel" else scaler.mean_.shape
        return ((values - scaler.mean_.reshape(shape)) / scaler.scale_.reshape(shape)).astype(np.float32)
    shape = (1, -1, *[1] * (x.ndim - 2)) if scaler.axis == "channel" else scaler.min_.shape
    return (values * scaler.scale_.reshape(shape) + scaler.min_.reshape(shape)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.bool_])
@pytest.mark.parametrize("axis", ["feature", "channel", "global"])
@pytest.mark.parametrize("make", [StandardScaler, lambda axis: MinMaxScaler((-1, 1), axis=axis)])
def test_8_bit_input_is_looked_up_to_the_bits_the_arithmetic_gives(dtype, axis, make):
    rng = np.random.default_rng(3)
    x = rng.integers(-128 if dtype == np.int8 else 0, 2 if dtype == np.bool_ else 128, size=(700, 3, 5, 4)).astype(dtype)
    scaler = make(axis=axis).fit(x[:400])
    assert scaler.lookup_table(x).shape == {"feature": (256, 3, 5, 4), "channel": (256, 3, 1, 1), "global": (256, 1, 1, 1)}[axis]
    np.testing.assert_array_equal(scaler.transform(x), _reference(scaler, x))
    np.testing.assert_array_equal(scaler.transform(torch.from_numpy(x)).numpy(), _reference(scaler, x))
    few = x[:10]  # fewer samples than the table has rows: computed, to the same bits
    np.testing.assert_array_equal(scaler.transform(few), scaler.transform(x)[:10])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.bool_])
@pytest.mark.parametrize("axis", ["feature", "channel", "global"])
@pytest.mark.parametrize("flush_every_chunk", [False, True])
def test_integer_statistics_are_the_exact_sums_rounded_once(dtype, axis, flush_every_chunk, monkeypatch):
    from fractions import Fraction

    import transforms.scalers as scalers

    if flush_every_chunk:  # int64 partial sums moved to exact Python integers before each chunk, as past 2**31 values
        monkeypatch.setattr(scalers, "_INT64_LIMIT", 1)
        monkeypatch.setattr(scalers, "_CHUNK_ELEMENTS", 40)

    info = np.iinfo(dtype) if dtype != np.bool_ else None
    low, high = (0, 2) if info is None else (info.min, info.max + 1)
    x = np.random.default_rng(4).integers(low, high, size=(300, 2, 3, 3)).astype(dtype)
    scaler = StandardScaler(axis=axis).fit(x)
    units = {"feature": x.reshape(300, -1).T, "channel": x.transpose(1, 0, 2, 3).reshape(2, -1), "global": x.reshape(1, -1)}[axis]
    for unit, mean, var in zip(units, scaler.mean_.reshape(-1), scaler.var_.reshape(-1)):
        values = [int(v) for v in unit]
        exact_mean = Fraction(sum(values), len(values))
        assert mean == float(exact_mean)
        assert var == float(sum((v - exact_mean) ** 2 for v in values) / len(values))
    reference = preprocessing.StandardScaler().fit(x.reshape(300, -1).astype(np.float64))
    if axis == "feature":
        np.testing.assert_allclose(scaler.scale_.reshape(-1), reference.scale_, rtol=1e-12)


def test_float_input_is_scaled_in_chunks_to_the_bits_of_one_pass(monkeypatch):
    import transforms.scalers as scalers

    x = np.random.default_rng(5).normal(size=(50, 6)).astype(np.float32)
    whole = StandardScaler().fit(x)
    expected = whole.transform(x)
    monkeypatch.setattr(scalers, "_CHUNK_ELEMENTS", 12)  # two samples per chunk
    chunked = StandardScaler().fit(x)
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-14)
    np.testing.assert_allclose(chunked.var_, whole.var_, rtol=1e-12)
    np.testing.assert_array_equal(chunked.transform(x), _reference(chunked, x))
    np.testing.assert_allclose(chunked.transform(x), expected, rtol=1e-6)
    np.testing.assert_allclose(chunked.inverse_transform(expected), x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int16])
@pytest.mark.parametrize("make", [StandardScaler, MinMaxScaler])
def test_one_value_scales_globally_as_before(dtype, make):
    scaler = make(axis="global").fit(np.array(5, dtype=dtype))
    assert scaler.transform(np.array(5, dtype=dtype)) == 0.0 and scaler.scale_ == 1.0


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_minmax_fits_wide_unsigned_input(dtype):
    x = torch.tensor([[3, 60000], [7, 5], [5, 9]]).to(dtype)
    scaler = MinMaxScaler().fit(x)
    np.testing.assert_array_equal(scaler.data_min_, [3, 5])
    np.testing.assert_array_equal(scaler.data_max_, [7, 60000])
    np.testing.assert_allclose(scaler.transform(x), [[0, 1], [1, 0], [0.5, 4 / 59995]], rtol=1e-6)


def test_a_reversed_read_only_view_is_scaled():
    x = np.arange(12.0).reshape(4, 3)
    x.flags.writeable = False
    view = x[:, ::-1]
    np.testing.assert_allclose(StandardScaler().fit_transform(view), StandardScaler().fit_transform(view.copy()))


@pytest.mark.parametrize("shape", [(0, 3, 2, 2), (0,)])
def test_an_empty_8_bit_array_is_looked_up_to_an_empty_one(shape):
    from transforms.scalers import look_up

    out = look_up(np.zeros((256, *([1] * (len(shape) - 1))), np.float32), np.zeros(shape, np.uint8))
    assert out.shape == shape and out.dtype == np.float32
