"""Training on a CUDA device: the default run, where the data sits, mixed precision, the step
replayed from CUDA graphs.

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
from trainers.arrays import fused_array
from trainers.checkpoints import load_checkpoint
from trainers.loop import Member, fit_array

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


def fused_digits_training(cuda_graphs: bool):
    """Three members (their own seeds, rates, dropout and label smoothing; one stops two epochs
    early, so the others go on without it) trained on digits on the GPU, from the same start."""
    train, val = digits_on_gpu()
    spec = {"type": "cnn", "channels": [8, 16], "hidden": [32], "batch_norm": True}
    specs = [{**spec, "dropout": rate} for rate in (0.0, 0.2, 0.4)]
    optims = [{"name": "adam", "lr": lr} for lr in (1e-3, 2e-3, 3e-3)]
    array = fused_array(specs, optims, [0, 1, 2], (1, 8, 8), 10, train.x.device)
    members = [
        Member(train, val, epochs, seed=k, label_smoothing=smoothing, schedule={"type": "cosine"})
        for k, (epochs, smoothing) in enumerate([(4, 0.0), (2, 0.1), (4, 0.0)])
    ]
    initial = [{name: value.clone() for name, value in array.member_state_dict(k).items()} for k in range(3)]
    results = fit_array(array, members, batch_size=64, cuda_graphs=cuda_graphs, progress=False)
    return results, initial, [array.member_state_dict(k) for k in range(3)]


def test_cuda_graphs_replay_the_fused_step_with_the_eager_steps_results():
    """The step replayed from CUDA graphs trains each member as the eager step does: the graphs are
    captured after the warm-up steps, again for the short last batch and when a member stops.

    Not bit for bit: cuDNN may choose other algorithms under capture, and some CUDA kernels sum
    in no fixed order (on an H100 the first epoch's training loss differed by 2e-5, relative).
    Adam turns such differences in tiny gradients into whole steps, so after 88 steps the weights
    differ by about 1e-3 of their norm (1.2e-3 on an H100): they are compared with how far
    training moved them, which a replay of the wrong batch or member would not stay far under.
    """
    torch.manual_seed(0)
    graphed, initial_weights, graphed_weights = fused_digits_training(cuda_graphs=True)
    torch.manual_seed(0)
    plain, _, plain_weights = fused_digits_training(cuda_graphs=False)
    steps_per_epoch = -(-1400 // 64)  # 21 full batches and one of 56
    assert plain[0].graph_replays == 0
    # Every step but two eager warm-ups of each kind: full and last batch, before and after member 1 stops.
    assert graphed[0].graph_replays == 4 * steps_per_epoch - 8
    for ours, theirs in zip(graphed, plain, strict=True):
        assert ours.epochs_run == theirs.epochs_run
        for a, b in zip(ours.history, theirs.history, strict=True):
            assert a["lr"] == pytest.approx(b["lr"], rel=1e-6)
            for column in ("train_loss", "val_loss"):
                assert a[column] == pytest.approx(b[column], rel=1e-3), column
            for column in ("train_accuracy", "val_accuracy"):
                assert a[column] == pytest.approx(b[column], abs=0.01), column
    for ours, theirs, initial in zip(graphed_weights, plain_weights, initial_weights, strict=True):
        for name in theirs:
            if theirs[name].is_floating_point():
                moved = (theirs[name] - initial[name]).norm()
                assert moved > 0, name
                assert (ours[name] - theirs[name]).norm() <= 0.05 * moved, name
            else:
                assert torch.equal(ours[name], theirs[name]), name  # BatchNorm's batch counts


def test_the_run_record_says_whether_the_step_ran_from_cuda_graphs(tmp_path):
    def run(graphs):
        overrides = [*FAST, "train.device=cuda", "model.dropout=0.3", f"train.cuda_graphs={graphs}"]
        # Replaying from graphs is not part of the train key: separate caches, or the second run is a hit.
        return run_pipeline(load_config(None, overrides), tmp_path / str(graphs), tmp_path / "runs", progress=False)

    graphed, plain = run(True), run(False)
    assert graphed.record["cuda_graphs"] is True and plain.record["cuda_graphs"] is False
    assert graphed.record["stages"][-1]["key"] == plain.record["stages"][-1]["key"]
    for a, b in zip(graphed.history, plain.history, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_an_augmentation_replays_on_the_gpu_to_the_cpus_pixels():
    """The kernels take another path on CUDA (flips blend instead of selecting samples): the
    same drawn parameters give the same pixels on both devices."""
    from transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomVerticalFlip

    x = torch.randint(0, 256, (64, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    recipe = Compose([RandomCrop(10, padding=2), RandomHorizontalFlip(), RandomVerticalFlip()])
    params = recipe.sample_params(x, torch.Generator().manual_seed(1))
    assert torch.equal(recipe.apply(x.cuda(), params).cpu(), recipe.apply(x, params))
