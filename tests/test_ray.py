"""The Ray executor gives the same ablation as the local one (a local Ray instance, 2 CPUs); GPUs
for Ray tasks and for local worker processes."""

import json
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from pipeline.ablation.executors import claim_gpu, run_on_ray, wants_gpu
from pipeline.ablation.plan import Task
from pipeline.config import load_config
from pipeline.errors import RunFailed

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
        run_on_ray([], [], None, lambda member_epochs: None)


@pytest.mark.slow
@pytest.mark.cuda
def test_a_training_on_cuda_is_a_ray_task_holding_a_gpu(tmp_path):
    pytest.importorskip("ray")
    base = {"train": {"epochs": 3, "device": "cuda"}, "model": {"channels": [8], "hidden": [16]}}
    task = Task("cuda", 0, load_config(None, base=base), str(tmp_path / "cache"), str(tmp_path / "runs"))
    assert wants_gpu(task, cluster_gpus=1)
    (result,) = run_on_ray([task], [[task]], None, lambda member_epochs: None, init_options={"num_cpus": 1, "num_gpus": 1})
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes the cluster at `address` counts alive, asked from another process."""
    probe = "import ray; ray.init(address=%r, log_to_driver=False); print(sum(node['Alive'] for node in ray.nodes()))" % address
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else 0


@pytest.mark.slow
def test_an_ablation_runs_across_two_nodes_of_a_cluster_that_asks_for_a_token(tmp_path):
    """docs/distributed.md's recipe on one host: a head and a second node started with
    RAY_AUTH_MODE=token and one token file, the ablation's driver with the same; each node one
    CPU, so the trainings (one task each, --fuse off) run on both. The nodes run with --block and
    stop on SIGTERM, and keep their files (and the address a later `ray.init()` would pick up) in
    a temporary folder of their own, so no other Ray on this machine is touched."""
    pytest.importorskip("ray")
    (tmp_path / "token").write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "token"), "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    ray_start = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--num-cpus", "1", "--disable-usage-stats", "--temp-dir", temp_dir]
    (tmp_path / "tiny.yaml").write_text(
        "train: {epochs: 2, device: cpu}\nmodel: {channels: [8], hidden: [16]}\n"
        "ablation: {design: full, seeds: [0, 1], factors: {model.dropout: {side: model, values: [0.0, 0.3]}}}\n"
    )
    nodes = [subprocess.Popen([*ray_start, "--head", "--port", str(port), "--include-dashboard=false"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        assert any(alive_nodes(address, env) == 1 for _ in range(20)), "the head did not come up"
        nodes.append(subprocess.Popen([*ray_start, "--address", address], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert any(alive_nodes(address, env) == 2 for _ in range(20)), "the second node did not join"
        command = [sys.executable, "-m", "pipeline", "ablate", "--config", "tiny.yaml", "--executor", "ray", "--ray-address", address,
                   "--fuse", "off", "--out", "out", "--cache-dir", "c", "--quiet"]
        done = subprocess.run(command, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        for node in reversed(nodes):
            node.terminate()
            node.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)
    trained_on = {json.loads(path.read_text())["environment"]["ray_node"] for path in (tmp_path / "out" / "runs").glob("*/run.json")}
    assert len(trained_on) == 2 and None not in trained_on


@pytest.mark.parametrize("refusal", ["ConnectionError", "AuthenticationError"])
def test_a_cluster_that_turns_the_driver_away_is_a_run_failure_that_names_the_token(monkeypatch, refusal):
    """Ray 2.60 says "a previous instance has crashed" (ConnectionError) to a driver without the
    token, and raises AuthenticationError where RAY_AUTH_MODE=token finds none."""
    ray = pytest.importorskip("ray")
    import ray.exceptions

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    errors = {"ConnectionError": ConnectionError, "AuthenticationError": ray.exceptions.AuthenticationError}

    def refuse(**_options):
        raise errors[refusal]("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(RunFailed, match=r"cannot reach the Ray cluster at 10\.0\.0\.1:6379: .*run with RAY_AUTH_MODE=token"):
        run_on_ray([], [], "10.0.0.1:6379", lambda member_epochs: None)
