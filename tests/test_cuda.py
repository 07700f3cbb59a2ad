"""Training on a CUDA device: the default run, where the data sits, mixed precision.

Every test here needs a GPU and skips without one (the `cuda` marker). Resume, DDP over NCCL,
SyncBatchNorm and Ray's GPU tasks are tested beside their CPU counterparts in test_cli.py,
test_distributed.py and test_ray.py.
"""

import json

import pytest
import torch
from sklearn.datasets import load_digits

from conftest import FAST, cli
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from trainers import Split, build_model, build_optimizer, fit
from trainers.checkpoints import load_checkpoint

pytestmark = pytest.mark.cuda


def record_of(runs_dir):
    (path,) = runs_dir.glob("*/run.json")
    return json.loads(path.read_text())


def test_the_default_run_trains_on_the_gpu(tmp_path):
    """`python -m pipeline run` with nothing set: `train.device=auto` picks CUDA, data on the device."""
    done = cli("run", "--cache-dir", "c", "--runs-dir", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = record_of(tmp_path / "r")
    assert record["device"] == f"cuda:{torch.cuda.current_device()}"
    assert record["environment"]["cuda_device"] == torch.cuda.get_device_name(0)
    assert record["metrics"]["test_accuracy"] >= 0.97


def test_data_on_the_device_and_the_host_loader_give_the_same_result(tmp_path):
    def run(where):
        overrides = [*FAST, "train.device=cuda", "train.deterministic=true", f"train.data_on_device={where}"]
        # Where the data sits is not part of the train key: separate caches, or the second run is a hit.
        return run_pipeline(load_config(None, overrides), tmp_path / where, tmp_path / "runs", progress=False)

    on_device, through_loader = run("always"), run("never")
    assert on_device.record["stages"][-1]["cache"] == through_loader.record["stages"][-1]["cache"] == "miss"
    for a, b in zip(on_device.history, through_loader.history, strict=True):
        for column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert a[column] == pytest.approx(b[column], rel=1e-5, abs=1e-6), column
    assert on_device.metrics["test_accuracy"] == pytest.approx(through_loader.metrics["test_accuracy"], abs=1e-9)


def digits_on_gpu() -> tuple[Split, Split]:
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    device = torch.device("cuda", torch.cuda.current_device())
    return Split(x[:1400].to(device), y[:1400].to(device)), Split(x[1400:].to(device), y[1400:].to(device))


@pytest.mark.parametrize("precision, dtype, scaled", [("bf16", torch.bfloat16, False), ("fp16", torch.float16, True)])
def test_mixed_precision_runs_under_autocast_with_the_grad_scaler_for_fp16(tmp_path, precision, dtype, scaled):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    torch.manual_seed(0)
    train, val = digits_on_gpu()
    model = build_model({"type": "cnn"}, (1, 8, 8), 10).to(train.x.device)
    seen = []
    model.net[0].register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    optimizer = build_optimizer(model.parameters(), {"name": "adam", "lr": 2e-3})
    checkpoint = tmp_path / "fit.pt"
    result = fit(model, train, val, optimizer, epochs=4, batch_size=64, precision=precision, checkpoint=checkpoint, progress=False)
    assert set(seen) == {dtype}  # the first convolution ran in half precision, in training and evaluation
    scaler = load_checkpoint(checkpoint)["scaler"]
    assert bool(scaler) == scaled  # GradScaler state exists for fp16 only; bf16 needs no loss scaling
    if scaled:
        assert scaler["scale"] > 0
    assert all(row["train_loss"] == row["train_loss"] for row in result.history)  # no NaN
    assert result.history[-1]["val_accuracy"] >= 0.9
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_pipeline_records_the_precision_it_used_on_cuda(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    config = load_config(None, [*FAST, "train.epochs=6", "train.device=cuda", f"train.precision={precision}"])
    result = run_pipeline(config, tmp_path / "cache", tmp_path / "runs", progress=False)
    assert result.record["precision"] == precision
    assert result.metrics["test_accuracy"] >= 0.8
