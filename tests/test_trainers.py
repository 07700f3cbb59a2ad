import math

import pytest
import torch
from torch import nn

from trainers import CNN, EarlyStopping, Split, StopReason, build_model, build_optimizer, evaluate, fit


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


def test_batch_norm_sits_between_layer_and_activation():
    model = CNN((1, 8, 8), 10, channels=[4], hidden=[8], batch_norm=True, dropout=0.2)
    kinds = [type(layer) for layer in model.net]
    assert kinds[:4] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout]
    assert model.net[0].bias is None
    head = kinds[kinds.index(nn.Flatten) + 1 :]
    assert head == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]


def test_without_batch_norm_or_dropout():
    model = build_model({"type": "cnn", "channels": [4, 4], "hidden": [8], "batch_norm": False}, (1, 8, 8), 3)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.Dropout)) for m in model.modules())
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def toy_splits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 4, 4, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return Split(x[:64], y[:64]), Split(x[64:], y[64:])


def train_once(epochs=4, **kwargs):
    torch.manual_seed(0)
    model = CNN((1, 4, 4), 2, channels=[4], hidden=[8])
    train, val = toy_splits()
    optimizer = build_optimizer(model.parameters(), {"name": "adam", "lr": 1e-2})
    result = fit(model, train, val, optimizer, epochs=epochs, batch_size=16, progress=False, **kwargs)
    return model, result


def test_same_seed_gives_identical_history_and_weights():
    model_a, result_a = train_once()
    model_b, result_b = train_once()
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert strip(result_a.history) == strip(result_b.history)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_restore_best_loads_the_best_epochs_weights():
    model, result = train_once(epochs=6)
    best = min(result.history, key=lambda row: row["val_loss"])
    assert result.best_epoch == best["epoch"]
    assert evaluate(model, toy_splits()[1])[0] == pytest.approx(best["val_loss"], rel=1e-6)


def test_history_has_the_documented_columns():
    _, result = train_once(epochs=2)
    assert list(result.history[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert result.epochs_run == 2 and result.stopped_epoch == 2


def test_epoch_randomness_depends_only_on_seed_and_epoch():
    from trainers.loop import epoch_generator

    draw = lambda seed, epoch, stream: torch.randperm(50, generator=epoch_generator(seed, epoch, stream, torch.device("cpu")))
    assert torch.equal(draw(0, 3, 0), draw(0, 3, 0))
    assert not torch.equal(draw(0, 3, 0), draw(0, 4, 0))
    assert not torch.equal(draw(0, 3, 0), draw(1, 3, 0))
    assert not torch.equal(draw(0, 3, 0), draw(0, 3, 1))


def test_online_augmentation_is_reproducible_and_changes_training():
    from transforms import RandomCrop

    crop = RandomCrop(4, padding=1)
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    _, plain = train_once(epochs=2)
    _, first = train_once(epochs=2, augment=crop, augment_seed=1)
    _, again = train_once(epochs=2, augment=crop, augment_seed=1)
    _, other = train_once(epochs=2, augment=crop, augment_seed=2)
    assert strip(first.history) == strip(again.history)
    assert strip(first.history) != strip(plain.history)
    assert strip(first.history) != strip(other.history)
