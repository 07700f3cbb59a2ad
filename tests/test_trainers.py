import ast
import inspect
import math

import pytest
import torch
from torch import nn

from trainers import (
    EarlyStopping,
    Plateau,
    Split,
    StopReason,
    TrainingDiverged,
    build_model,
    build_optimizer,
    confusion_matrix,
    evaluate,
    fit,
    learning_rate,
    per_class_accuracy,
)
import trainers.checkpoints
import trainers.loop
from trainers.checkpoints import load_checkpoint
from trainers.loop import epoch_generator


def run(sequence, **kwargs):
    """Feed a scripted metric sequence; return (epoch stopped at, reason, best epoch)."""
    stopper = EarlyStopping(**kwargs)
    for epoch, value in enumerate(sequence, start=1):
        stop, reason = stopper.step(value, epoch)
        if stop:
            return epoch, reason, stopper.best_epoch
    return None, StopReason.NOT_STOPPED, stopper.best_epoch


@pytest.mark.parametrize(
    "sequence, kwargs, expected",
    [
        ([1.0, 0.9, 0.8, 0.85, 0.86, 0.87], {"patience": 3}, (6, StopReason.PATIENCE, 3)),
        ([1.0, 0.9, 0.8, 0.85, 0.79, 0.87], {"patience": 3}, (None, StopReason.NOT_STOPPED, 5)),
        # 0.79 beats 0.8 by only 0.01, which is not more than min_delta: not an improvement.
        ([1.0, 0.8, 0.79, 0.795, 0.7], {"patience": 2, "min_delta": 0.01}, (4, StopReason.PATIENCE, 2)),
        ([0.5, 0.6, 0.6, 0.55], {"patience": 2, "mode": "max"}, (4, StopReason.PATIENCE, 2)),
        ([1.0, math.nan], {"patience": 5}, (2, StopReason.NON_FINITE, 1)),
        ([1.0, math.inf], {"patience": 5}, (2, StopReason.NON_FINITE, 1)),
    ],
)
def test_early_stopping_on_scripted_sequences(sequence, kwargs, expected):
    assert run(sequence, **kwargs) == expected


def test_early_stopping_state_round_trip():
    first = EarlyStopping(patience=3)
    for epoch, value in enumerate([1.0, 0.5, 0.6], start=1):
        first.step(value, epoch)
    second = EarlyStopping(patience=3)
    second.load_state_dict(first.state_dict())
    assert second.step(0.7, 4) == first.step(0.7, 4) == (False, StopReason.NOT_STOPPED)
    assert second.step(0.7, 5) == (True, StopReason.PATIENCE)


# --- models ---------------------------------------------------------------------------------------


def kinds(model):
    return [type(layer) for layer in model.net]


def test_batch_norm_sits_between_layer_and_activation():
    model = build_model({"type": "cnn", "channels": [4], "hidden": [8], "dropout": 0.2}, (1, 8, 8), 10)
    assert kinds(model)[:4] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout]
    assert model.net[0].bias is None
    head = kinds(model)[kinds(model).index(nn.Flatten) + 1 :]
    assert head == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]


def test_without_batch_norm_or_dropout():
    model = build_model({"type": "cnn", "channels": [4, 4], "hidden": [8], "batch_norm": False}, (1, 8, 8), 3)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.Dropout)) for m in model.modules())
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_wide_and_deep_mlp_and_auto_type():
    deep = build_model({"hidden": [32, 32, 32], "activation": "gelu", "dropout_input": 0.1}, (5,), 2)
    wide = build_model({"hidden": [512]}, (5,), 2)
    assert kinds(deep)[:2] == [nn.Flatten, nn.Dropout]
    assert sum(isinstance(m, nn.Linear) for m in deep.modules()) == 4 and sum(isinstance(m, nn.GELU) for m in deep.modules()) == 3
    assert sum(isinstance(m, nn.Linear) for m in wide.modules()) == 2
    assert isinstance(build_model({}, (1, 8, 8), 3).net[0], nn.Conv2d)


@pytest.mark.parametrize("activation, module", [("leaky_relu", nn.LeakyReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)])
def test_activation_switch(activation, module):
    model = build_model({"hidden": [8], "activation": activation}, (4,), 2)
    assert any(isinstance(m, module) for m in model.modules()) and not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_init_schemes():
    torch.manual_seed(0)
    normal = build_model({"hidden": [256], "batch_norm": False, "init": "normal", "init_std": 0.05}, (400,), 2)
    kaiming = build_model({"hidden": [256], "batch_norm": False, "init": "kaiming"}, (400,), 2)
    xavier = build_model({"hidden": [256], "batch_norm": False, "init": "xavier", "activation": "tanh"}, (400,), 2)
    first = lambda model: next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first(normal).weight.std().item() == pytest.approx(0.05, rel=0.05)
    assert first(kaiming).weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.05)
    assert first(xavier).weight.std().item() == pytest.approx(5 / 3 * math.sqrt(2 / (400 + 256)), rel=0.05)
    assert torch.count_nonzero(first(kaiming).bias) == 0


@pytest.mark.parametrize("spec", [{"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, {"name": "adam", "lr": 0.1}, {"name": "adamw", "lr": 0.1, "weight_decay": 0.01}, {"name": "rmsprop", "lr": 0.1}])
def test_optimizers(spec):
    optimizer = build_optimizer([nn.Parameter(torch.ones(2))], spec)
    assert type(optimizer).__name__.lower() == spec["name"]


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov needs optim.momentum"):
        build_optimizer([nn.Parameter(torch.ones(2))], {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": True})


# --- schedules: the same numbers as torch's schedulers --------------------------------------------

EPOCHS, STEPS = 12, 5


def torch_rates(make_scheduler, per_step):
    optimizer = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)
    scheduler = make_scheduler(optimizer)
    rates = []
    for _ in range(EPOCHS):
        for _ in range(STEPS):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_step:
                scheduler.step()
        if not per_step:
            scheduler.step()
    return rates


@pytest.mark.parametrize(
    "spec, make_scheduler, per_step",
    [
        ({"type": "step", "step_size": 4, "gamma": 0.5}, lambda o: torch.optim.lr_scheduler.StepLR(o, 4, 0.5), False),
        ({"type": "multistep", "milestones": [3, 7], "gamma": 0.1}, lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 7], 0.1), False),
        ({"type": "exponential", "gamma": 0.8}, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8), False),
        ({"type": "cosine", "min_lr": 0.001}, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, EPOCHS * STEPS, 0.001), True),
        ({"type": "onecycle", "pct_start": 0.3}, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.1, total_steps=EPOCHS * STEPS, cycle_momentum=False), True),
    ],
)
def test_schedules_match_torch(spec, make_scheduler, per_step):
    ours = [learning_rate(spec, 0.1, step, STEPS, EPOCHS) for step in range(EPOCHS * STEPS)]
    assert ours == pytest.approx(torch_rates(make_scheduler, per_step), rel=1e-9, abs=1e-12)


def test_linear_warmup():
    spec = {"type": "none", "warmup_epochs": 2}
    rates = [learning_rate(spec, 0.1, step, STEPS, EPOCHS) for step in range(3 * STEPS)]
    assert rates[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert rates[10:] == pytest.approx([0.1] * 5)


def test_plateau_matches_reduce_lr_on_plateau():
    losses = [1.0, 0.9, 0.9, 0.91, 0.95, 0.89, 0.9, 0.9, 0.9, 0.9]
    optimizer = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    plateau = Plateau(factor=0.5, patience=2)
    for loss in losses:
        reference.step(loss)
        plateau.step(loss)
        assert 0.1 * plateau.scale == pytest.approx(optimizer.param_groups[0]["lr"])
    assert plateau.scale < 1


# --- the loop -------------------------------------------------------------------------------------


def toy_splits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 4, 4, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return Split(x[:64], y[:64]), Split(x[64:], y[64:])


def train_once(epochs=4, **kwargs):
    torch.manual_seed(0)
    model = build_model({"type": "cnn", "channels": [4], "hidden": [8], "dropout": 0.1}, (1, 4, 4), 2)
    train, val = toy_splits()
    optimizer = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    result = fit(model, train, val, optimizer, epochs=epochs, batch_size=16, progress=False, **kwargs)
    return model, result


def strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_same_seed_gives_identical_history_and_weights():
    model_a, result_a = train_once()
    model_b, result_b = train_once()
    assert strip(result_a.history) == strip(result_b.history)
    assert same_weights(model_a, model_b)


def test_restore_best_loads_the_best_epochs_weights():
    model, result = train_once(epochs=6)
    best = min(result.history, key=lambda row: row["val_loss"])
    assert result.best_epoch == best["epoch"]
    assert evaluate(model, toy_splits()[1])[0] == pytest.approx(best["val_loss"], rel=1e-6)


def test_history_columns_and_logged_learning_rate():
    _, result = train_once(epochs=4, schedule={"type": "step", "step_size": 2, "gamma": 0.5})
    assert list(result.history[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "val_loss_se"]
    assert [row["lr"] for row in result.history] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3])
    assert result.epochs_run == 4 and result.stopped_epoch == 4


def test_early_stopping_ends_training_and_restores_best():
    stopper = EarlyStopping(patience=1, min_delta=10.0)  # nothing after epoch 1 counts as better
    model, result = train_once(epochs=8, early_stopping=stopper)
    assert (result.best_epoch, result.stopped_epoch, result.stop_reason) == (1, 2, "patience")


def test_label_smoothing_changes_the_training_loss():
    _, plain = train_once(epochs=1)
    _, smooth = train_once(epochs=1, label_smoothing=0.2)
    assert smooth.history[0]["train_loss"] > plain.history[0]["train_loss"]


def test_host_loader_path_matches_device_path(monkeypatch):
    _, on_device = train_once(epochs=3)
    # Data that is not where training runs goes through the DataLoader path; on the CPU it
    # always is, so pretend otherwise.
    monkeypatch.setattr(trainers.loop, "same_device", lambda a, b: False)
    _, through_loader = train_once(epochs=3)
    assert strip(through_loader.history) == strip(on_device.history)


def test_epoch_randomness_depends_only_on_seed_and_epoch():
    draw = lambda seed, epoch, stream: torch.randperm(50, generator=epoch_generator(seed, epoch, stream, torch.device("cpu")))
    assert torch.equal(draw(0, 3, 0), draw(0, 3, 0))
    assert not torch.equal(draw(0, 3, 0), draw(0, 4, 0))
    assert not torch.equal(draw(0, 3, 0), draw(1, 3, 0))
    assert not torch.equal(draw(0, 3, 0), draw(0, 3, 1))


def test_online_augmentation_is_reproducible_and_changes_training():
    from transforms import RandomCrop

    crop = RandomCrop(padding=1)
    _, plain = train_once(epochs=2)
    _, first = train_once(epochs=2, augment=crop, augment_seed=1)
    _, again = train_once(epochs=2, augment=crop, augment_seed=1)
    _, other = train_once(epochs=2, augment=crop, augment_seed=2)
    assert strip(first.history) == strip(again.history)
    assert strip(first.history) != strip(plain.history)
    assert strip(first.history) != strip(other.history)


class Interrupt(Exception):
    pass


def stop_after(epoch_to_stop):
    def hook(epoch):
        if epoch == epoch_to_stop:
            raise Interrupt

    return hook


@pytest.mark.parametrize("schedule", [{"type": "onecycle"}, {"type": "plateau", "gamma": 0.5, "patience": 1}])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, schedule):
    stopper = lambda: EarlyStopping(patience=50)
    whole, whole_result = train_once(epochs=6, schedule=schedule, early_stopping=stopper())
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        train_once(epochs=6, schedule=schedule, early_stopping=stopper(), checkpoint=checkpoint, on_epoch_end=stop_after(3))
    assert len(load_checkpoint(checkpoint)["histories"][0]) == 3
    resumed, resumed_result = train_once(epochs=6, schedule=schedule, early_stopping=stopper(), checkpoint=checkpoint, resume=True)
    assert resumed_result.resumed_from_epoch == 3
    assert strip(resumed_result.history) == strip(whole_result.history)
    assert same_weights(resumed, whole)


def test_checkpoints_are_written_once_their_interval_has_passed(tmp_path, monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(trainers.checkpoints.time, "monotonic", lambda: clock["now"])
    checkpoint = tmp_path / "run.pt"
    on_file = []

    def epoch_takes_four_seconds(epoch):
        on_file.append(len(load_checkpoint(checkpoint)["histories"][0]) if checkpoint.exists() else 0)
        clock["now"] += 4.0
        if epoch == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_once(epochs=6, checkpoint=checkpoint, checkpoint_every=7.0, on_epoch_end=epoch_takes_four_seconds)
    # Epochs end at 0, 4, 8, 12, 16 s: epoch 3 is the first 7 s after the start, epoch 5 the first 7 s after that.
    assert on_file == [0, 0, 3, 3, 5]
    resumed, result = train_once(epochs=6, checkpoint=checkpoint, checkpoint_every=7.0, resume=True)
    whole, whole_result = train_once(epochs=6)
    assert result.resumed_from_epoch == 5
    assert strip(result.history) == strip(whole_result.history)
    assert same_weights(resumed, whole)


def test_interrupt_leaves_the_best_weights_in_the_model():
    torch.manual_seed(0)
    model = build_model({"type": "cnn", "channels": [4], "hidden": [8]}, (1, 4, 4), 2)
    train, val = toy_splits()
    optimizer = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    val_losses = []

    def interrupt_at_epoch_3(epoch):
        val_losses.append(evaluate(model, val)[0])
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model, train, val, optimizer, epochs=5, batch_size=16, progress=False, on_epoch_end=interrupt_at_epoch_3)
    assert len(val_losses) == 3
    assert evaluate(model, val)[0] == pytest.approx(min(val_losses), rel=1e-6)


def test_non_finite_loss_names_epoch_and_batch_and_keeps_the_checkpoint(tmp_path):
    calls = {"n": 0}

    def poison(batch, generator):
        calls["n"] += 1
        return batch * float("nan") if calls["n"] == 7 else batch  # epoch 2 (4 batches per epoch), batch 2

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(TrainingDiverged, match=r"NaN or inf at epoch 2, batch 2; the checkpoint of epoch 1 is kept"):
        train_once(epochs=4, augment=poison, checkpoint=checkpoint)
    assert len(load_checkpoint(checkpoint)["histories"][0]) == 1


def test_confusion_matrix_and_per_class_accuracy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    target = torch.tensor([0, 1, 1, 2])
    matrix = confusion_matrix(logits, target, 3)
    assert matrix == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert per_class_accuracy(matrix + [[0, 0, 0]], ["a", "b", "c", "d"]) == {"a": 1.0, "b": 0.5, "c": 1.0, "d": None}


def test_a_trailing_single_sample_batch_is_dropped_so_batch_norm_can_train():
    torch.manual_seed(0)
    model = build_model({"hidden": [8]}, (3,), 2)  # BatchNorm1d cannot train on one sample
    x = torch.randn(33, 3)
    train = Split(x, (x.sum(dim=1) > 0).long())
    optimizer = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    result = fit(model, train, train, optimizer, epochs=2, batch_size=16, progress=False)
    assert result.epochs_run == 2


def test_fit_splits_its_keywords_between_the_member_and_the_loop():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x = torch.randn(32, 4)
    train = Split(x, (x.sum(dim=1) > 0).long())
    stopper = EarlyStopping(patience=1, min_delta=10.0)  # no epoch improves by 10: stops after the second
    result = fit(model, train, train, torch.optim.SGD(model.parameters(), lr=0.1), epochs=5, batch_size=16,
                 early_stopping=stopper, restore_best=False, device=torch.device("cpu"), progress=False)
    assert (result.stop_reason, result.epochs_run, result.kept_epoch) == (StopReason.PATIENCE.value, 2, 2)
    with pytest.raises(TypeError, match="no_such_setting"):
        fit(model, train, train, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=16, no_such_setting=1)


def test_no_function_of_the_loop_is_longer_than_60_lines():
    tree = ast.parse(inspect.getsource(trainers.loop))
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    lengths = [(node.name, node.end_lineno - node.lineno + 1) for node in functions]  # def line to last line, nested ones too
    assert functions and [(name, lines) for name, lines in lengths if lines > 60] == []


def test_advice_names_only_regularizers_that_apply_to_the_data():
    from trainers.diagnosis import diagnose

    curves = [
        {"epoch": e, "train_accuracy": t, "val_accuracy": v, "train_loss": 0.1, "val_loss": loss, "lr": 1e-3, "seconds": 0.1}
        for e, (t, v, loss) in enumerate(zip([0.9, 0.99, 1.0], [0.88, 0.9, 0.9], [0.5, 0.4, 0.45]), start=1)
    ]
    table = ["dropout", "batch normalization", "early stopping"]  # no augmentation for a table
    assert diagnose(curves, uses=["dropout"], applies=table).advice.endswith("Regularize: batch normalization, early stopping.")
    every = diagnose(curves, uses=table, applies=table).advice
    assert "already uses dropout, batch normalization and early stopping: regularize more strongly (a higher dropout rate, weight decay)" in every
    assert "augmentation" not in every


def test_a_table_run_is_never_advised_to_augment(tmp_path):
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    # Breast cancer with a wide network trained on past its best epoch overfits; the advice to
    # regularize must not name augmentation, which a table cannot have.
    config = load_config(None, ["data.source=sklearn:breast_cancer", "augment.mode=none", "model.hidden=[256, 256]", "train.epochs=40",
                                "early_stop.enabled=false", "train.device=cpu", "optim.lr=0.01"])
    diagnosis = run_pipeline(config, tmp_path / "c", tmp_path / "r", progress=False).record["diagnosis"]
    assert diagnosis["verdict"] == "overfitting" and "Regularize: " in diagnosis["advice"]
    assert "augmentation" not in diagnosis["advice"]
