"""Device identity and the multi-GPU guards, on any machine: CUDA is mocked where it is needed."""

import pytest
import torch

import trainers.loop
from pipeline.cli import main
from trainers import Split, canonical_device, resolve_device, same_device
from trainers.distributed import check_one_gpu_per_rank, init_from_env


def test_auto_resolves_to_an_indexed_cuda_device(fake_cuda):
    # A tensor on the GPU reports `cuda:0`; a bare `cuda` never equals it.
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_bare_cuda_means_the_current_device(fake_cuda):
    fake_cuda.current = 1  # what torch.cuda.set_device(1) does, e.g. for torchrun's second local rank
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert same_device(torch.device("cuda", 1), "cuda")
    assert not same_device(torch.device("cuda", 0), "cuda")


def test_data_on_the_gpu_is_already_where_training_wants_it(fake_cuda):
    where_the_data_is = torch.device("cuda", 0)
    assert same_device(where_the_data_is, resolve_device("auto"))
    assert not same_device(where_the_data_is, "cuda:1")
    assert not same_device(where_the_data_is, "cpu")


def test_resolving_a_device_does_not_start_cuda(fake_cuda, monkeypatch):
    """A torchrun rank resolves `auto` before it picks its GPU: that must not open a context on cuda:0."""
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: pytest.fail("current_device() starts CUDA"))
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_the_cpu_is_one_device():
    assert canonical_device("cpu:0") == canonical_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_without_cuda_auto_is_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["cuda:2", "cuda:99999999999999999999"])
def test_a_cuda_device_this_machine_lacks_is_named(fake_cuda, name):
    with pytest.raises(ValueError, match=r"train\.device is 'cuda:\d+'"):
        resolve_device(name)


def test_data_already_on_the_target_device_skips_the_host_loader(monkeypatch):
    """The bug behind every CUDA crash: data where training wants it went through the DataLoader."""

    def no_loader(*args, **kwargs):
        raise AssertionError("data already on the device went through the host DataLoader")

    monkeypatch.setattr(torch.utils.data, "DataLoader", no_loader)
    split = Split(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    # The same device, spelled with an index: it must count as "already there".
    data = trainers.loop.ArrayData([split])
    got = list(trainers.loop.batches(data, torch.arange(5).view(1, 5), 2, torch.device("cpu", 0)))
    assert [y.shape[1] for _, y in got] == [2, 2, 1]
    assert torch.equal(torch.cat([x[0] for x, _ in got]), split.x)


@pytest.fixture
def torchrun_env(monkeypatch):
    """The environment torchrun gives the second of three ranks on this machine."""
    for name, value in {"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "3"}.items():
        monkeypatch.setenv(name, value)


def test_more_ranks_than_gpus_names_both_counts_and_the_fix(fake_cuda, torchrun_env):
    with pytest.raises(ValueError) as error:
        init_from_env("cuda")
    message = str(error.value)
    assert "3 processes" in message and "2 GPU(s)" in message
    assert "--nproc_per_node 2" in message and "train.device=cpu" in message


def test_as_many_ranks_as_gpus_pass_the_check(fake_cuda):
    check_one_gpu_per_rank(local_rank=1, local_world_size=2)
    with pytest.raises(ValueError, match="3 processes"):
        check_one_gpu_per_rank(local_rank=2, local_world_size=2)  # a LOCAL_WORLD_SIZE that undercounts


def test_more_ranks_than_gpus_exits_2_before_any_work(fake_cuda, torchrun_env, tmp_path, capsys, monkeypatch):
    set_device_calls = []
    monkeypatch.setattr(torch.cuda, "set_device", set_device_calls.append)
    monkeypatch.chdir(tmp_path)
    status = main(["run", "train.distributed=ddp", "train.device=cuda"])
    assert status == 2
    assert "torchrun started 3 processes on this machine but it has 2 GPU(s)" in capsys.readouterr().err
    assert set_device_calls == [] and list(tmp_path.iterdir()) == []
