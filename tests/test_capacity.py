"""How many members of a fused array a device holds."""

import pytest
import torch

from pipeline.config import load_config
from trainers.capacity import ACTIVATION_COPIES, PARAMETER_COPIES, check_fits, member_bytes, members_that_fit, split_evenly
from trainers.models import build_model

SPEC = load_config(None, []).model.model_dump(exclude={"sync_batch_norm"})


def test_a_member_needs_its_parameters_and_activations_several_times_over():
    mlp = {**SPEC, "type": "mlp", "hidden": [32], "batch_norm": False}
    parameters = sum(p.numel() for p in build_model(mlp, (20,), 3).parameters())  # 20*32+32 + 32*3+3
    # Layer outputs per sample: Linear 32, ReLU 32, Linear 3 (Flatten passes 20 along).
    activations = 20 + 32 + 32 + 3
    assert member_bytes(mlp, (20,), 3, batch_size=8) == 4 * (PARAMETER_COPIES * parameters + ACTIVATION_COPIES * 8 * activations)
    assert member_bytes(SPEC, (1, 28, 28), 10, 128) > member_bytes(SPEC, (1, 28, 28), 10, 64) > member_bytes(SPEC, (1, 8, 8), 10, 64)


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
