"""One conformance suite over every registered transform, then per-transform behaviour."""

import math
import pickle

import albumentations as A
import numpy as np
import pytest
import torch

import transforms
from transforms import (
    TRANSFORMS,
    Albumentations,
    GaussianNoise,
    Normalize,
    OneOf,
    RandomAffine,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    TorchvisionV2,
    build_recipe,
    dump_recipe,
    from_dict,
    load_recipe,
    slice_params,
)
from transforms import functional as TF

# Every registered transform needs an example here: a new transform without one fails the suite.
EXAMPLES = {
    "RandomHorizontalFlip": {"p": 0.5},
    "RandomVerticalFlip": {"p": 0.5},
    "RandomCrop": {"size": 8, "padding": 2, "p": 0.7},
    "RandomAffine": {"degrees": 30, "translate": [0.1, 0.2], "scale": [0.8, 1.2], "fill": 3, "p": 0.8},
    "RandomErasing": {"scale": [0.05, 0.3], "value": 7, "p": 0.7},
    "GaussianNoise": {"std": [0.0, 0.1], "p": 0.8},
    "BrightnessContrast": {"brightness": 0.3, "contrast": 0.3, "p": 0.9},
    "Normalize": {"mean": [0.5, 0.4], "std": [0.2, 0.3]},
    "Compose": {"transforms": [{"name": "RandomCrop", "size": 6, "padding": 1}, {"name": "RandomHorizontalFlip"}]},
    "OneOf": {"transforms": [{"name": "RandomVerticalFlip", "p": 1.0}, {"name": "RandomErasing", "p": 1.0}], "weights": [1, 2], "p": 0.8},
    "Albumentations": {"transform": "Affine", "args": {"rotate": [-20, 20], "p": 1.0}},
    "TorchvisionV2": {"transform": "RandomRotation", "args": {"degrees": 20}},
}
# Transforms whose output dtype is not the input's by design.
CHANGES_DTYPE = {"Normalize"}
# Adapters hand samples to a library one by one: they run, but are not held to float64 or empty batches.
PER_SAMPLE_LIBRARIES = {"Albumentations", "TorchvisionV2"}


def build(name):
    return from_dict({"name": name, **EXAMPLES[name]})


def batch(dtype=torch.uint8, n=12):
    values = (torch.arange(n * 2 * 8 * 8) * 37 % 251).reshape(n, 2, 8, 8)
    return values.to(dtype) if dtype == torch.uint8 else (values / 255.0).to(dtype)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_every_registered_transform_has_an_example():
    assert set(EXAMPLES) == set(TRANSFORMS)


def dtypes_for(name):
    if name in PER_SAMPLE_LIBRARIES:
        return [torch.uint8]
    return [torch.uint8, torch.float32, torch.float64]


CASES = [(name, dtype) for name in EXAMPLES for dtype in dtypes_for(name)]


@pytest.mark.parametrize("name, dtype", CASES)
def test_dtype_device_kept_and_input_untouched(name, dtype):
    x = batch(dtype)
    before = x.clone()
    out = build(name)(x, generator())
    assert torch.equal(x, before)
    assert out.device == x.device
    if name not in CHANGES_DTYPE:
        assert out.dtype == dtype
    assert out.shape[0] == x.shape[0]


@pytest.mark.parametrize("name, dtype", CASES)
def test_same_seed_same_output_and_exact_replay(name, dtype):
    transform, x = build(name), batch(dtype)
    first = transform(x, generator(3))
    assert torch.equal(first, transform(x, generator(3)))
    params = transform.sample_params(x, generator(3))
    assert torch.equal(transform.apply(x, params), first)


@pytest.mark.parametrize("name", EXAMPLES)
def test_batched_equals_one_sample_at_a_time(name):
    transform, x = build(name), batch(torch.float32)
    params = transform.sample_params(x, generator(1))
    whole = transform.apply(x, params)
    for i in range(x.shape[0]):
        single = transform.apply(x[i : i + 1], slice_params(params, slice(i, i + 1)))
        torch.testing.assert_close(single, whole[i : i + 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", EXAMPLES)
def test_one_image_as_a_dataset_transform(name):
    transform, x = build(name), batch()
    out = transform(x[0], generator(2))
    assert out.ndim == 3
    assert torch.equal(out, transform(x[:1], generator(2))[0])


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - PER_SAMPLE_LIBRARIES))
def test_empty_batch(name):
    out = build(name)(batch(n=0), generator())
    assert out.shape[0] == 0


@pytest.mark.parametrize("name", EXAMPLES)
def test_pickle_and_to_dict_round_trips(name):
    transform, x = build(name), batch()
    expected = transform(x, generator(5))
    assert torch.equal(pickle.loads(pickle.dumps(transform))(x, generator(5)), expected)
    assert torch.equal(from_dict(transform.to_dict())(x, generator(5)), expected)


@pytest.mark.parametrize("name", EXAMPLES)
def test_global_rng_is_untouched(name):
    state = torch.get_rng_state()
    build(name)(batch(), generator())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - {"Normalize", "Compose"}))
def test_params_are_drawn_per_sample(name):
    x = batch(torch.float32, n=32)
    out = build(name)(x, generator(7))
    deltas = {round(float((out[i] - x[i]).abs().sum()), 3) for i in range(32)}
    assert len(deltas) > 3, f"{name} looks like one draw for the whole batch"


# --- exactness against albumentations, pixel for pixel -------------------------------------------

def test_hflip_equals_albumentations_per_sample():
    x = batch()
    params = RandomHorizontalFlip().sample_params(x, generator(6))
    ours = RandomHorizontalFlip().apply(x, params)
    flip = A.HorizontalFlip(p=1.0)
    for i, flipped in enumerate(params["flip"].tolist()):
        image = x[i].permute(1, 2, 0).numpy()
        theirs = flip(image=image)["image"] if flipped else image
        np.testing.assert_array_equal(ours[i].permute(1, 2, 0).numpy(), theirs)


def test_vflip_equals_albumentations_per_sample():
    x = batch()
    params = RandomVerticalFlip(p=1.0).sample_params(x, generator(6))
    ours = RandomVerticalFlip(p=1.0).apply(x, params)
    for i in range(x.shape[0]):
        theirs = A.VerticalFlip(p=1.0)(image=x[i].permute(1, 2, 0).numpy())["image"]
        np.testing.assert_array_equal(ours[i].permute(1, 2, 0).numpy(), theirs)


def test_pad_crop_equals_albumentations_per_sample():
    x = batch()
    crop = RandomCrop(8, padding=2, fill=0)
    params = crop.sample_params(x, generator(4))
    ours = crop.apply(x, params)
    for i, (top, left) in enumerate(zip(params["top"].tolist(), params["left"].tolist())):
        theirs = A.Compose([A.Pad(padding=2, fill=0), A.Crop(x_min=left, y_min=top, x_max=left + 8, y_max=top + 8)])(
            image=x[i].permute(1, 2, 0).numpy()
        )["image"]
        np.testing.assert_array_equal(ours[i].permute(1, 2, 0).numpy(), theirs)


def test_normalize_equals_albumentations():
    x = batch()
    ours = Normalize(mean=[0.5, 0.4], std=[0.2, 0.3])(x)
    theirs = A.Normalize(mean=(0.5, 0.4), std=(0.2, 0.3), max_pixel_value=255.0)(image=x[0].permute(1, 2, 0).numpy())["image"]
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), theirs, rtol=1e-6, atol=1e-6)


def test_albumentations_adapter_accepts_a_compose_and_serializes_it():
    pipeline = A.Compose([A.HorizontalFlip(p=1.0), A.Pad(padding=1)])
    adapter = Albumentations(pipeline)
    out = adapter(batch(), generator())
    assert out.shape == (12, 2, 10, 10)
    assert torch.equal(from_dict(adapter.to_dict())(batch(), generator()), out)


# --- kernels and behaviour ------------------------------------------------------------------------


def test_affine_rotates_counter_clockwise_and_shifts_in_pixels():
    x = batch(torch.float32, n=2)
    rotated = TF.affine(x, torch.tensor([90.0, 90.0]), torch.zeros(2, 2), torch.ones(2))
    torch.testing.assert_close(rotated, torch.rot90(x, 1, (2, 3)), atol=1e-4, rtol=0)
    shifted = TF.affine(x, torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2))
    torch.testing.assert_close(shifted[0, :, :, 1:], x[0, :, :, :-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(shifted[1, :, 2:, :], x[1, :, :-2, :], atol=1e-4, rtol=0)


def test_affine_identity_and_fill():
    x = batch(torch.float32, n=3)
    assert torch.allclose(RandomAffine(p=0.0)(x, generator()), x, atol=1e-5)
    shifted = TF.affine(x, torch.zeros(3), torch.tensor([[3.0, 0.0]] * 3), torch.ones(3), fill=9.0)
    assert torch.allclose(shifted[:, :, :, :3], torch.tensor(9.0))


def test_erasing_sets_a_rectangle():
    x = batch(torch.uint8, n=1)
    out = TF.erase(x, torch.tensor([1]), torch.tensor([2]), torch.tensor([3]), torch.tensor([4]), value=0)
    assert (out[0, :, 1:4, 2:6] == 0).all()
    outside = torch.ones_like(x, dtype=torch.bool)
    outside[0, :, 1:4, 2:6] = False
    assert torch.equal(out[outside], x[outside])


def test_erasing_area_follows_scale():
    x = batch(torch.float32, n=400)
    params = RandomErasing(scale=(0.1, 0.3), ratio=(1, 1), p=1.0).sample_params(x, generator())
    area = (params["height"] * params["width"]).float() / 64
    assert 0.05 <= float(area.min()) and float(area.max()) <= 0.4


def test_noise_std_is_in_units_of_the_dtype_maximum():
    x = torch.full((200, 1, 8, 8), 0.5)
    out = GaussianNoise(std=(0.1, 0.1))(x, generator())
    assert math.isclose(float((out - x).std()), 0.1, rel_tol=0.05)
    x8 = torch.full((200, 1, 8, 8), 128, dtype=torch.uint8)
    out8 = GaussianNoise(std=(0.1, 0.1))(x8, generator())
    assert math.isclose(float((out8.float() - 128).std()), 25.5, rel_tol=0.05)


def test_brightness_contrast_clamps_uint8_and_keeps_mean_under_contrast():
    x = batch(torch.float32, n=4)
    out = TF.brightness_contrast(x, torch.full((4,), 2.0), torch.zeros(4))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    bright = TF.brightness_contrast(torch.full((1, 1, 2, 2), 250, dtype=torch.uint8), torch.ones(1), torch.ones(1) * 0.1)
    assert (bright == 255).all()


def test_one_of_picks_per_sample_by_weight():
    x = batch(torch.float32, n=400)
    one_of = OneOf([RandomHorizontalFlip(p=1.0), RandomVerticalFlip(p=1.0)], weights=[3, 1], p=0.5)
    choice = one_of.sample_params(x, generator())["choice"]
    counts = torch.bincount(choice + 1, minlength=3).tolist()
    assert 150 < counts[0] < 250 and counts[1] > 2 * counts[2] > 0


def test_recipe_yaml_round_trip(tmp_path):
    recipe = build_recipe([{"name": "RandomCrop", "size": 8, "padding": 2}, {"name": "RandomHorizontalFlip"}])
    text = dump_recipe(recipe)
    assert text.startswith("format: gainsplit.transforms/1")
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    for loaded in (load_recipe(text), load_recipe(path), load_recipe("- {name: RandomCrop, size: 8, padding: 2}\n- {name: RandomHorizontalFlip}\n")):
        assert torch.equal(loaded(batch(), generator(9)), recipe(batch(), generator(9)))


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"name": "Spin"}, r"Unknown transform 'Spin'"),
        ({"name": "RandomCrop", "size": 8, "paddng": 1}, r"unknown parameter.*paddng"),
        ({"size": 8}, r"'name' key"),
        ({"name": "RandomHorizontalFlip", "p": 2}, r"'p' parameter"),
        ({"name": "RandomCrop", "size": 0}, r"'size' parameter"),
        ({"name": "RandomAffine", "translate": [0.5, 2]}, r"'translate' parameter"),
        ({"name": "RandomAffine", "interpolation": "cubic"}, r"'interpolation' parameter"),
        ({"name": "RandomErasing", "scale": [0.5, 0.1]}, r"'scale' parameter"),
        ({"name": "GaussianNoise", "std": -1}, r"'std' parameter"),
        ({"name": "BrightnessContrast", "contrast": 2}, r"'contrast' parameter"),
        ({"name": "Normalize", "mean": [0.5], "std": [0]}, r"positive std"),
        ({"name": "OneOf", "transforms": [{"name": "RandomHorizontalFlip"}], "weights": [1, 2]}, r"'weights' parameter"),
        ({"name": "Albumentations", "transform": "HorizontalFlap"}, r"albumentations has no transform 'HorizontalFlap'.*HorizontalFlip"),
        ({"name": "TorchvisionV2", "transform": "RandomFlip"}, r"torchvision.transforms.v2 has no transform"),
    ],
)
def test_bad_specs_are_named(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_recipe([spec])


@pytest.mark.parametrize(
    "action, pattern",
    [
        (lambda: RandomCrop(12, padding=1)(batch(), generator()), "larger than the padded image"),
        (lambda: RandomHorizontalFlip()(torch.zeros(8, 8)), r"\(N, C, H, W\)"),
        (lambda: Normalize([0.1, 0.2, 0.3], [1, 1, 1])(batch()), "3 channel statistics"),
        (lambda: OneOf([RandomCrop(6)], p=1.0)(batch(), generator()), "shape-preserving"),
        (lambda: TorchvisionV2(object()).to_dict(), "cannot be serialized"),
    ],
)
def test_bad_use_is_named(action, pattern):
    with pytest.raises(ValueError, match=pattern):
        action()


def test_import_transforms_stays_light():
    import subprocess
    import sys

    code = "import sys, transforms; print(sorted(m for m in ('albumentations', 'torchvision', 'cv2', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_listed():
    for name in transforms.__all__:
        assert hasattr(transforms, name)
    assert set(TRANSFORMS) <= set(transforms.__all__)


def test_agpl_fork_warns_once(monkeypatch):
    import warnings

    from transforms import AGPLAlbumentationsWarning, adapters

    adapters._albumentations.cache_clear()
    monkeypatch.setattr(adapters.importlib.metadata, "packages_distributions", lambda: {"albumentations": ["AlbumentationsX"]})
    try:
        with pytest.warns(AGPLAlbumentationsWarning, match="AGPL"):
            Albumentations("HorizontalFlip")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Albumentations("HorizontalFlip")
    finally:
        adapters._albumentations.cache_clear()


def test_crop_without_size_keeps_the_input_size():
    x = batch(n=4)
    crop = RandomCrop(padding=2)
    out = crop(x, generator())
    assert out.shape == x.shape
    assert from_dict(crop.to_dict()).size is None


def test_transforms_take_numpy_batches_as_the_scalers_do_and_give_numpy_back():
    """`RandomCrop(16, padding=2)(numpy_batch, gen)` once said it expected (N, C, H, W) of a batch of
    exactly that shape: the type was the problem. The same pixels as the tensor path, as NumPy."""
    from transforms import Compose, RandomCrop, RandomHorizontalFlip

    batch = np.random.default_rng(0).random((16, 1, 16, 16), dtype=np.float32)
    for transform in (RandomCrop(16, padding=2), Compose([RandomCrop(16, padding=2), RandomHorizontalFlip()])):
        from_numpy = transform(batch, torch.Generator().manual_seed(3))
        from_tensor = transform(torch.from_numpy(batch.copy()), torch.Generator().manual_seed(3))
        assert isinstance(from_numpy, np.ndarray) and np.array_equal(from_numpy, from_tensor.numpy())


def test_a_composition_or_registration_of_the_wrong_things_is_named():
    from transforms import Compose, OneOf, RandomCrop, register

    with pytest.raises(TypeError, match="Compose takes a list of transforms; got 'RandomCrop'"):
        Compose("RandomCrop")
    with pytest.raises(TypeError, match=r"OneOf takes a list of transforms; got \{'name': 'RandomCrop'\} among them"):
        OneOf([{"name": "RandomCrop"}])
    with pytest.raises(ValueError, match=r"'weights' parameter of OneOf must hold one non-negative weight per transform. Got \[nan\]"):
        OneOf([RandomCrop(8)], weights=[float("nan")])
    with pytest.raises(TypeError, match="register takes a subclass of transforms.Transform; got <class 'int'>"):
        register(int)


def test_params_drawn_for_another_batch_or_not_params_at_all_are_named():
    """Each sample has its own draw: params of a batch of 2 applied to 5 would broadcast one
    draw over several samples (GaussianNoise gave five identical images) or fail deep in torch."""
    from transforms import Compose, GaussianNoise, RandomCrop, RandomHorizontalFlip

    g = torch.Generator().manual_seed(0)
    small, large = torch.rand(2, 1, 8, 8), torch.rand(5, 1, 8, 8)
    for transform in (RandomCrop(8, padding=1), GaussianNoise(std=0.1), Compose([RandomCrop(8, padding=1), RandomHorizontalFlip()])):
        name = type(transform).__name__
        with pytest.raises(ValueError, match=f"{name}: params drawn for a batch of 2 applied to a batch of 5"):
            transform.apply(large, transform.sample_params(small, g))
    with pytest.raises(ValueError, match="RandomCrop: params lack 'top'"):
        RandomCrop(8, padding=1).apply(small, {})
    with pytest.raises(TypeError, match="RandomCrop.apply takes the params that sample_params drew"):
        RandomCrop(8, padding=1).apply(small, [1, 2])
    with pytest.raises(TypeError, match="draws from a torch.Generator .* got 42"):
        RandomCrop(8, padding=1)(small, 42)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16, torch.int64, torch.bool, torch.bfloat16])
@pytest.mark.parametrize("shape, crop", [((9, 3, 7, 5), {"size": [6, 4], "padding": 2, "fill": 9, "p": 0.8}), ((64, 1, 8, 8), {"size": 8, "padding": 0}), ((5, 2, 4, 6), {"padding": 3})])
def test_a_crop_then_a_flip_in_one_copy_gives_the_pixels_of_the_two_apart(dtype, shape, crop):
    x = torch.randint(0, 100, shape).to(dtype)
    recipe = transforms.Compose([RandomCrop(**crop), RandomHorizontalFlip(p=0.5), Normalize([0.2], [0.5], max_pixel_value=1.0)])
    generator = torch.Generator().manual_seed(3)
    params = recipe.sample_params(x, generator)
    fused = recipe(x, torch.Generator().manual_seed(3))  # CPU: crop and flip as one copy
    apart = x
    for step, child in zip(recipe.transforms, params["children"]):
        apart = step.apply(apart, child)  # one transform at a time, as a replay does
    assert torch.equal(fused, apart) and torch.equal(recipe.apply(x, params), apart)
    assert params["children"][1]["flip"].any() and not params["children"][1]["flip"].all()  # both kinds of sample met


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
def test_pad_crop_mirrors_exactly_the_chosen_samples(dtype):
    x = torch.arange(4 * 2 * 5 * 6).reshape(4, 2, 5, 6).to(dtype)
    top, left = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 0, 1, 2])
    mirror = torch.tensor([True, False, True, False])
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=5)
    windows = [padded[n, :, top[n] : top[n] + 4, left[n] : left[n] + 4] for n in range(4)]  # one sample at a time
    expected = torch.stack([window.flip(-1) if mirror[n] else window for n, window in enumerate(windows)])
    assert torch.equal(TF.pad_crop(x, top, left, (4, 4), padding=1, fill=5, mirror=mirror), expected)
