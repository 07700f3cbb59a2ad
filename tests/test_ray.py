"""The Ray executor gives the same ablation as the local one (a local Ray instance, 2 CPUs); GPUs
for Ray tasks and for local worker processes."""

import multiprocessing
import sys

import pytest
import torch

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from pipeline.ablation.executors import claim_gpu, run_on_ray, wants_gpu
from pipeline.ablation.plan import Task
from pipeline.config import load_config

SMALL = AblationConfig(
    design="full",
    seeds=[0, 1],
    factors={
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.dropout": {"side": "model", "values": [0.0, 0.3]},
    },
)


def fast_base():
    # Equal accuracies across executors is a CPU promise (CUDA kernels may differ run to run).
    return {"train": {"epochs": 3, "device": "cpu"}, "model": {"channels": [8], "hidden": [16]}}


@pytest.mark.slow
def test_ray_executor_matches_the_local_executor(tmp_path):
    pytest.importorskip("ray")
    local = run_ablation(fast_base(), [], SMALL, tmp_path / "local", tmp_path / "cache-local", jobs=2, progress=False)
    on_ray = run_ablation(
        fast_base(), [], SMALL, tmp_path / "ray", tmp_path / "cache-ray", progress=False,
        executor="ray", ray_options={"num_cpus": 2},
    )
    assert on_ray["stages"] == local["stages"]
    assert [v["test_accuracy"] for v in on_ray["variants"]] == [v["test_accuracy"] for v in local["variants"]]
    assert [e["sentence"] for e in on_ray["effects"] + on_ray["side_effects"]] == [
        e["sentence"] for e in local["effects"] + local["side_effects"]
    ]


def test_without_ray_the_message_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install 'gainsplit\[ray\]'"):
        run_on_ray([], [], None, lambda: None)


@pytest.mark.slow
@pytest.mark.cuda
def test_a_training_on_cuda_is_a_ray_task_holding_a_gpu(tmp_path):
    pytest.importorskip("ray")
    base = {"train": {"epochs": 3, "device": "cuda"}, "model": {"channels": [8], "hidden": [16]}}
    task = Task("cuda", 0, load_config(None, base=base), str(tmp_path / "cache"), str(tmp_path / "runs"))
    assert wants_gpu(task, cluster_gpus=1)
    (result,) = run_on_ray([task], [[task]], None, lambda: None, init_options={"num_cpus": 1, "num_gpus": 1})
    record = result.record
    assert record["device"].startswith("cuda:") and record["metrics"]["test_accuracy"] > 0.5
    # Ray hands the task the GPU it asked for, and only that one.
    assert record["environment"]["cuda_visible_devices"] not in (None, "")


def test_tasks_ask_ray_for_a_gpu_only_when_they_train_on_cuda():
    task = lambda device: Task("v", 0, load_config(None, [f"train.device={device}"]), "c", "r")
    assert wants_gpu(task("cuda"), cluster_gpus=0) and wants_gpu(task("cuda:1"), cluster_gpus=0)
    assert wants_gpu(task("auto"), cluster_gpus=2) and not wants_gpu(task("auto"), cluster_gpus=0)
    assert not wants_gpu(task("cpu"), cluster_gpus=2)


def test_local_workers_take_the_gpus_in_turn(fake_cuda, monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    for _ in range(3):
        claim_gpu(counter)
    assert chosen == [0, 1, 0]
    fake_cuda.count = 1
    claim_gpu(counter)
    assert chosen == [0, 1, 0]  # one GPU: nothing to spread
