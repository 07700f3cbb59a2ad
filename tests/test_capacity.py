"""How many members of a fused array a device holds."""

import pytest
import torch

from pipeline.config import load_config
from torch import nn

from trainers.capacity import ACTIVATION_COPIES, PARAMETER_COPIES, check_fits, layer_outputs, member_bytes, members_that_fit, split_evenly
from trainers.models import build_model

SPEC = load_config(None, []).model.model_dump(exclude={"sync_batch_norm"})


def test_a_member_needs_its_parameters_and_activations_several_times_over():
    mlp = {**SPEC, "type": "mlp", "hidden": [32], "batch_norm": False}
    parameters = sum(p.numel() for p in build_model(mlp, (20,), 3).parameters())  # 20*32+32 + 32*3+3
    # Layer outputs per sample: Linear 32, ReLU 32, Linear 3 (Flatten passes 20 along).
    activations = 20 + 32 + 32 + 3
    assert member_bytes(mlp, (20,), 3, batch_size=8) == 4 * (PARAMETER_COPIES * parameters + ACTIVATION_COPIES * 8 * activations)
    assert member_bytes(SPEC, (1, 28, 28), 10, 128) > member_bytes(SPEC, (1, 28, 28), 10, 64) > member_bytes(SPEC, (1, 8, 8), 10, 64)


def _real_outputs(model, input_shape):
    """Each layer's output elements per sample, from a real forward pass of two samples on the CPU."""
    sizes = []
    hooks = [layer.register_forward_hook(lambda _m, _i, output: sizes.append(output[0].numel())) for layer in model.net]
    model.net.eval()(torch.randn(2, *input_shape))
    for hook in hooks:
        hook.remove()
    return sizes


def odd_network(pool, input_shape):
    """A network that fuses, with convolution and pooling settings the built-in CNN never uses."""
    features = nn.Sequential(
        nn.Conv2d(3, 4, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        nn.ReLU(), pool, nn.Conv2d(4, 5, 3, padding="same"), nn.Conv2d(5, 2, 2, padding="valid"),
        nn.BatchNorm2d(2), nn.Flatten(), nn.Dropout(0.1),
    )
    model = nn.Module()
    model.net = nn.Sequential(*features, nn.Linear(features.eval()(torch.zeros(1, *input_shape)).shape[1], 7))
    return model


@pytest.mark.parametrize(
    ("spec", "input_shape"),
    [
        (SPEC, (1, 8, 8)),
        ({**SPEC, "channels": [8, 16, 16], "dropout": 0.3, "batch_norm": False}, (1, 28, 28)),  # 28 -> 14 -> 7 -> 3
        ({**SPEC, "channels": [4], "activation": "gelu"}, (3, 1, 5)),  # too small to pool
        ({**SPEC, "type": "mlp", "hidden": [32, 16], "dropout_input": 0.2}, (20,)),
    ],
)
def test_layer_outputs_of_the_built_in_networks_match_a_real_forward_pass(spec, input_shape):
    model = build_model(spec, input_shape, 10)
    assert layer_outputs(model, input_shape) == _real_outputs(model, input_shape)


@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), nn.MaxPool2d(2, dilation=2), nn.AvgPool2d(3, stride=2, ceil_mode=True), nn.AvgPool2d((2, 3))],
)
@pytest.mark.parametrize("input_shape", [(3, 11, 13), (3, 16, 15)])
def test_layer_outputs_follow_pytorchs_shape_rules(pool, input_shape):
    model = odd_network(pool, input_shape)
    assert layer_outputs(model, input_shape) == _real_outputs(model, input_shape)


def test_a_network_that_does_not_fuse_is_measured_on_the_meta_device():
    model = nn.Module()
    model.net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout2d(0.1))
    assert layer_outputs(model, (1, 8, 8)) is None
    spec = {"type": "torchvision:resnet18"}
    assert member_bytes(spec, (3, 32, 32), 10, 2) > 4 * PARAMETER_COPIES * sum(p.numel() for p in build_model(spec, (3, 32, 32), 10).parameters())


def test_free_cuda_memory_caps_the_members(fake_cuda, monkeypatch):
    one = member_bytes(SPEC, (1, 8, 8), 10, 64)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(10.5 * one / 0.4), 80 * 2**30))
    assert members_that_fit(SPEC, (1, 8, 8), 10, 64, torch.device("cuda", 0), most=32) == 10
    assert members_that_fit(SPEC, (1, 8, 8), 10, 64, torch.device("cuda", 0), most=4) == 4
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (one // 10, 80 * 2**30))
    assert members_that_fit(SPEC, (1, 8, 8), 10, 64, torch.device("cuda", 0), most=32) == 1
    assert members_that_fit(SPEC, (1, 8, 8), 10, 64, torch.device("cpu"), most=32) == 32


def test_a_network_is_checked_against_all_of_the_devices_memory(fake_cuda, monkeypatch):
    one = member_bytes(SPEC, (1, 8, 8), 10, 64)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0, one))  # nothing free now: still fits in all
    check_fits(SPEC, (1, 8, 8), 10, 64, torch.device("cuda", 0))
    with pytest.raises(ValueError, match=r"smaller layers \(model\.hidden or model\.channels\) or a smaller train\.batch_size"):
        check_fits(SPEC, (1, 8, 8), 10, 128, torch.device("cuda", 0))
    with pytest.raises(ValueError, match=r"the network \(\d{3},\d{3},\d{3},\d{3},\d{3} parameters\) .* the cpu has"):
        check_fits({**SPEC, "hidden": [10**12]}, (1, 8, 8), 10, 64, torch.device("cpu"))


@pytest.mark.parametrize(("count", "capacity", "sizes"), [(8, 3, [3, 3, 2]), (16, 5, [4, 4, 4, 4]), (5, 5, [5]), (1, 5, [1])])
def test_items_split_into_near_equal_pieces(count, capacity, sizes):
    pieces = split_evenly(list(range(count)), capacity)
    assert [len(piece) for piece in pieces] == sizes
    assert sum(pieces, []) == list(range(count))
