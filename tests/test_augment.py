import pickle

import pytest
import torch

from transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomVerticalFlip, build_recipe, from_dict

ALL = [
    RandomHorizontalFlip(p=0.5),
    RandomVerticalFlip(p=0.5),
    RandomCrop(size=8, padding=2, p=0.7),
    Compose([RandomCrop(6, padding=1), RandomHorizontalFlip()]),
]


def batch(dtype=torch.float32, n=16):
    return (torch.arange(n * 2 * 8 * 8) % 251).reshape(n, 2, 8, 8).to(dtype)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("transform", ALL, ids=repr)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_dtype_kept_and_input_not_modified(transform, dtype):
    x = batch(dtype)
    before = x.clone()
    out = transform(x, generator())
    assert out.dtype == dtype
    assert torch.equal(x, before)


@pytest.mark.parametrize("transform", ALL, ids=repr)
def test_same_seed_same_output_and_replay_is_exact(transform):
    x = batch()
    assert torch.equal(transform(x, generator(3)), transform(x, generator(3)))
    params = transform.sample_params(x, generator(3))
    assert torch.equal(transform.apply(x, params), transform(x, generator(3)))


@pytest.mark.parametrize("transform", ALL, ids=repr)
def test_batched_equals_one_sample_at_a_time(transform):
    x = batch()
    params = transform.sample_params(x, generator(1))
    whole = transform.apply(x, params)

    def select(p, i):
        if isinstance(p, dict):
            return {k: select(v, i) for k, v in p.items()}
        if isinstance(p, list):
            return [select(v, i) for v in p]
        return p[i : i + 1]

    for i in range(x.shape[0]):
        assert torch.equal(transform.apply(x[i : i + 1], select(params, i)), whole[i : i + 1])


@pytest.mark.parametrize("transform", ALL, ids=repr)
def test_empty_batch_and_pickling(transform):
    assert transform(batch(n=0), generator()).shape[0] == 0
    clone = pickle.loads(pickle.dumps(transform))
    assert torch.equal(clone(batch(), generator(5)), transform(batch(), generator(5)))


@pytest.mark.parametrize("transform", ALL, ids=repr)
def test_to_dict_round_trip(transform):
    rebuilt = from_dict(transform.to_dict())
    assert torch.equal(rebuilt(batch(), generator(2)), transform(batch(), generator(2)))


def test_params_are_drawn_per_sample():
    flips = RandomHorizontalFlip(p=0.5).sample_params(batch(n=64), generator())["flip"]
    assert 0 < int(flips.sum()) < 64
    crop = RandomCrop(8, padding=2).sample_params(batch(n=64), generator())
    assert len(set(zip(crop["top"].tolist(), crop["left"].tolist()))) > 5


def test_crop_matches_a_hand_written_pad_and_slice():
    x = batch(torch.uint8)
    crop = RandomCrop(8, padding=2, fill=7)
    params = crop.sample_params(x, generator(4))
    out = crop.apply(x, params)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=7)
    for i, (top, left) in enumerate(zip(params["top"].tolist(), params["left"].tolist())):
        assert torch.equal(out[i], padded[i, :, top : top + 8, left : left + 8])


def test_flip_matches_torch_flip():
    x = batch()
    params = RandomHorizontalFlip().sample_params(x, generator(6))
    out = RandomHorizontalFlip().apply(x, params)
    for i, flipped in enumerate(params["flip"].tolist()):
        assert torch.equal(out[i], x[i].flip(-1) if flipped else x[i])


def test_probability_zero_is_identity():
    x = batch()
    assert torch.equal(RandomCrop(8, padding=3, p=0.0)(x, generator()), x)
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x, generator()), x)


def test_global_rng_is_untouched():
    state = torch.get_rng_state()
    RandomCrop(8, padding=1)(batch())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"name": "Spin"}, r"Unknown transform 'Spin'"),
        ({"name": "RandomCrop", "size": 8, "paddng": 1}, r"unknown parameter.*paddng"),
        ({"size": 8}, r"'name' key"),
        ({"name": "RandomHorizontalFlip", "p": 2}, r"'p' parameter"),
        ({"name": "RandomCrop", "size": 0}, r"'size' parameter"),
    ],
)
def test_bad_specs_are_named(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_recipe([spec])


def test_crop_larger_than_padded_image():
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(12, padding=1)(batch(), generator())
