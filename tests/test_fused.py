"""Fused networks, their optimizer and the loop over an array: each member equals the same
network trained alone."""

import copy

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from trainers import EarlyStopping, Split, build_model, build_optimizer
from trainers.arrays import fused_array
from trainers.fused import FusedDropout, draw_as_rank, fuse, fused_cross_entropy, member_seeds
from trainers.fused_optim import FusedOptimizer
from trainers.loop import Member, fit, fit_array

SHAPE, CLASSES = (1, 8, 8), 5


def members(specs, input_shape=SHAPE):
    """One plain network per spec, member k initialised from seed k (as a solo run with train.seed=k)."""
    models = []
    for seed, spec in enumerate(specs):
        torch.manual_seed(seed)
        models.append(build_model(spec, input_shape, CLASSES))
    return models


CNN = {"type": "cnn", "channels": [4, 6], "hidden": [8]}
MLP = {"type": "mlp", "hidden": [12, 8]}
DROPOUTS = [{"dropout": 0.0}, {"dropout": 0.2, "dropout_input": 0.1}, {"dropout": 0.3}]
# After many steps, two orders of summation leave weights apart by rounding that training carries
# on; measured as a share of the distance training moved them, it is about 1e-6 on these small
# networks (default and AVX2 kernels, 1 and 2 threads). TRAINED_APART allows 100 times that; a
# member given another's learning rate, data or seed is off by 1e-2 or more.
TRAINED_APART = 1e-4


def distance_ratio(got, expected, start):
    """||got - expected|| / ||expected - start|| over every floating-point tensor but BatchNorm's running statistics."""
    names = [name for name, tensor in expected.items() if tensor.is_floating_point() and "running" not in name]
    flat = lambda state: torch.cat([state[name].flatten() for name in names])
    return float((flat(got) - flat(expected)).norm() / (flat(expected) - flat(start)).norm())


@pytest.mark.rounding
@pytest.mark.parametrize("base", [CNN, MLP], ids=["cnn", "mlp"])
def test_fused_members_compute_what_each_network_computes(base):
    models = members([{**base, **extra} for extra in DROPOUTS])
    fused = fuse(models, seeds=[0, 1, 2]).eval()
    x = torch.randn(3, 7, *SHAPE)
    out = fused(x)
    assert out.shape == (3, 7, CLASSES)
    for k, model in enumerate(models):
        torch.testing.assert_close(out[k], model.eval()(x[k]), rtol=1e-5, atol=1e-6)
        expected = model.state_dict()
        got = fused.member_state_dict(k)
        assert set(got) == set(expected)
        assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_member_state_round_trips_into_the_fused_network():
    models = members([CNN, CNN])
    fused = fuse(models, seeds=[0, 1])
    other = members([CNN, CNN, CNN])[2].state_dict()
    fused.load_member_state_dict(1, other)
    assert all(torch.equal(fused.member_state_dict(1)[name], other[name]) for name in other)
    assert all(torch.equal(fused.member_state_dict(0)[name], tensor) for name, tensor in models[0].state_dict().items())


@pytest.mark.parametrize(
    "specs, message",
    [
        ([CNN, {**CNN, "channels": [4, 8]}], r"member 1 has Conv2d\(4, 8"),
        ([CNN, {**CNN, "batch_norm": False}], "member 1 has Conv2d"),
        ([CNN, {**CNN, "activation": "tanh"}], "member 1 has Tanh"),
        ([MLP, {**MLP, "hidden": [12]}], "member 1 has"),
    ],
)
def test_networks_of_different_shapes_do_not_fuse(specs, message):
    with pytest.raises(ValueError, match=message):
        fuse(members(specs), seeds=[0, 1])


def test_batch_norm_statistics_never_mix_across_members():
    fused = fuse(members([CNN, CNN, CNN]), seeds=[0, 1, 2]).train()
    x = torch.randn(3, 16, *SHAPE)
    before = fused(x)
    x[0] = x[0] * 100 + 5  # only member 0's batch changes
    after = fused(x)
    torch.testing.assert_close(after[1:], before[1:])
    assert not torch.allclose(after[0], before[0])


def hashed(net, choice):
    """Draw dropout masks by hashing (as on CUDA) or from seeded PCG64 streams (as on the CPU)."""
    for layer in net.layers:
        if type(layer).__name__ == "FusedDropout":
            layer.hashed = choice
    return net


@pytest.mark.rounding
@pytest.mark.parametrize("hashing", [False, True], ids=["generators", "hash"])
def test_a_members_dropout_masks_do_not_depend_on_its_company(hashing):
    specs = [{**CNN, **extra} for extra in DROPOUTS]
    x = torch.randn(3, 16, *SHAPE)
    together = hashed(fuse(members(specs), seeds=[0, 1, 2]).train(), hashing)
    alone = hashed(fuse([members(specs)[1]], seeds=[1]).train(), hashing)
    for _ in range(3):  # successive calls draw new masks, in step
        torch.testing.assert_close(together(x)[1], alone(x[1:2])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hashing", [False, True], ids=["generators", "hash"])
def test_ddp_ranks_draw_their_own_masks(hashing):
    x = torch.ones(1, 64, 12)
    masks = {}
    for rank in (0, 1, 2):
        net = hashed(fuse(members([{**MLP, "dropout": 0.5}]), seeds=[0]).train(), hashing)
        draw_as_rank(net, rank)
        dropout = next(layer for layer in net.layers if isinstance(layer, FusedDropout))
        masks[rank] = dropout(x, "stacked") != 0
        assert "rank" not in "".join(net.state_dict())  # every rank loads rank 0's checkpoint
    plain = hashed(fuse(members([{**MLP, "dropout": 0.5}]), seeds=[0]).train(), hashing)
    dropout = next(layer for layer in plain.layers if isinstance(layer, FusedDropout))
    assert torch.equal(masks[0], dropout(x, "stacked") != 0)  # rank 0 draws what a run without DDP draws
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])


@pytest.mark.parametrize("hashing", [False, True], ids=["generators", "hash"])
def test_dropout_rates_and_evaluation(hashing):
    models = members([{**MLP, "dropout": rate} for rate in (0.2, 0.6)])
    fused = hashed(fuse(models, seeds=[0, 1]), hashing)
    dropout = next(layer for layer in fused.layers if type(layer).__name__ == "FusedDropout")
    x = torch.ones(2, 4000, 12)
    kept = (dropout(x, "stacked") != 0).float().mean(dim=(1, 2))
    torch.testing.assert_close(kept, torch.tensor([0.8, 0.4]), atol=0.02, rtol=0)
    assert dropout(x, "stacked")[1].max().item() == pytest.approx(1 / 0.4)
    dropout.eval()
    assert torch.equal(dropout(x, "stacked"), x)
    assert int(fused.state_dict()[next(n for n in fused.state_dict() if n.endswith("calls"))]) == 2


@pytest.mark.parametrize("hashing", [False, True], ids=["generators", "hash"])
@pytest.mark.parametrize("layout", ["channels", "stacked"])
def test_dropout_passes_gradients_through_its_own_mask_and_leaves_other_members_alone(hashing, layout):
    dropout = FusedDropout([0.0, 0.5, 0.0, 0.3], member_seeds([0, 1, 2, 3]), [0] * 4).train()
    dropout.hashed = hashing
    if layout == "channels":  # (B, K*C, H, W), channels-last as the CPU keeps it; member k's channels are [3k, 3k+3)
        x = (torch.rand(5, 12, 4, 4) + 0.5).contiguous(memory_format=torch.channels_last).requires_grad_()
        own = lambda t, k: t[:, 3 * k : 3 * k + 3]
    else:  # (K, B, F)
        x = (torch.rand(4, 5, 6) + 0.5).requires_grad_()
        own = lambda t, k: t[k]
    y = dropout(x, layout)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    noise = (y / x).detach()
    for k, rate in enumerate([0.0, 0.5, 0.0, 0.3]):
        if rate == 0:
            assert torch.equal(own(y, k), own(x, k)) and torch.equal(own(x.grad, k), own(upstream, k))
        else:
            kept = own(noise, k) != 0
            assert 0 < kept.float().mean() < 1
            torch.testing.assert_close(own(noise, k)[kept], torch.full_like(own(noise, k)[kept], 1 / (1 - rate)))
            torch.testing.assert_close(own(x.grad, k), own(upstream, k) * own(noise, k))


def test_fused_cross_entropy_matches_torch_per_member():
    logits, target = torch.randn(3, 9, CLASSES), torch.randint(0, CLASSES, (3, 9))
    smoothing = torch.tensor([0.0, 0.1, 0.3])
    losses = fused_cross_entropy(logits, target, smoothing)
    expected = torch.stack([F.cross_entropy(logits[k], target[k], label_smoothing=float(smoothing[k])) for k in range(3)])
    torch.testing.assert_close(losses, expected)


SETTINGS = {
    "sgd": {"lr": [0.1, 0.05, 0.2], "momentum": [0.0, 0.9, 0.5], "nesterov": [False, True, False], "weight_decay": [0.0, 1e-3, 0.0]},
    "adam": {"lr": [1e-2, 3e-3, 1e-3], "momentum": [0.9] * 3, "nesterov": [False] * 3, "weight_decay": [0.0, 1e-2, 0.0]},
    "adamw": {"lr": [1e-2, 3e-3, 1e-3], "momentum": [0.9] * 3, "nesterov": [False] * 3, "weight_decay": [0.0, 1e-2, 0.1]},
    "rmsprop": {"lr": [1e-3, 3e-3, 1e-2], "momentum": [0.0, 0.9, 0.5], "nesterov": [False] * 3, "weight_decay": [0.0, 1e-3, 0.0]},
}


def fused_and_alone(name):
    """A (3, 4, 5) fused parameter with its FusedOptimizer, and the same three members as
    separate parameters, each with the torch optimizer of its own settings."""
    settings = SETTINGS[name]
    start = torch.randn(3, 4, 5)
    fused = torch.nn.Parameter(start.clone())
    alone = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
    references = [
        build_optimizer([alone[k]], {"name": name, **{key: values[k] for key, values in settings.items()}}) for k in range(3)
    ]
    return fused, FusedOptimizer([fused], name, **settings), alone, references


@pytest.mark.rounding
@pytest.mark.parametrize("name", SETTINGS)
def test_fused_optimizer_moves_each_member_as_torch_optim_would(name):
    fused, optimizer, alone, references = fused_and_alone(name)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        grad = torch.randn(3, 4, 5, generator=generator)
        fused.grad = grad.clone()
        optimizer.step()
        for k in range(3):
            alone[k].grad = grad[k].clone()
            references[k].step()
    for k in range(3):
        torch.testing.assert_close(fused.detach()[k], alone[k].detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.rounding
@pytest.mark.parametrize("name", SETTINGS)
def test_under_a_grad_scaler_only_the_member_that_overflows_skips_its_step(name):
    """fp16's GradScaler skips a step whose gradients overflow; in an array only that member's."""
    fused, optimizer, alone, references = fused_and_alone(name)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    generator = torch.Generator().manual_seed(0)
    overflow_steps = {0, 3}  # the very first step too, before any optimizer state exists
    for step in range(6):
        grad = torch.randn(3, 4, 5, generator=generator)
        if step in overflow_steps:
            grad[1, 0, 0] = float("inf")
        fused.grad = None
        scaler.scale((fused * grad).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        for k in range(3):
            if not (k == 1 and step in overflow_steps):
                alone[k].grad = grad[k].clone()
                references[k].step()
    for k in range(3):
        torch.testing.assert_close(fused.detach()[k], alone[k].detach(), rtol=1e-5, atol=1e-6)
    assert optimizer.group["steps"].view(-1).tolist() == [6, 4, 6]
    assert scaler.get_scale() < 2.0**10  # the shared scale still backs off after an overflow


def test_a_frozen_member_keeps_its_weights_and_state():
    fused = torch.nn.Parameter(torch.randn(2, 3))
    optimizer = FusedOptimizer([fused], "adam", lr=[0.1, 0.1], momentum=[0.9, 0.9], nesterov=[False, False], weight_decay=[0.0, 0.0])
    fused.grad = torch.ones(2, 3)
    optimizer.step()
    optimizer.freeze(0)
    frozen, moments = fused.detach()[0].clone(), optimizer.state[fused]["exp_avg"][0].clone()
    moving = fused.detach()[1].clone()
    for _ in range(3):
        fused.grad = torch.ones(2, 3)
        optimizer.step()
    assert torch.equal(fused.detach()[0], frozen) and torch.equal(optimizer.state[fused]["exp_avg"][0], moments)
    assert not torch.equal(fused.detach()[1], moving)
    restored = FusedOptimizer([fused], "adam", lr=[0.1, 0.1], momentum=[0.9, 0.9], nesterov=[False, False], weight_decay=[0.0, 0.0])
    restored.load_state_dict(optimizer.state_dict())
    assert restored.group["active"].view(-1).tolist() == [False, True]


def train_steps(fused, optimizer, data, smoothing, steps=20):
    for step in range(steps):
        x, y = data(step)
        loss = fused_cross_entropy(fused(x), y, smoothing).sum()  # each member's gradient is its own loss's
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@pytest.mark.rounding
def test_three_fused_members_train_as_three_solo_runs():
    """K=3 fused and each member alone (an array of one), 20 steps on random data: weights agree to
    rounding carried through training (TRAINED_APART), and a member's neighbour is far off."""
    specs = [{**CNN, **extra} for extra in DROPOUTS]
    hyper = {"lr": [1e-2, 3e-3, 5e-3], "momentum": [0.9] * 3, "nesterov": [False] * 3, "weight_decay": [0.0, 1e-3, 0.0]}
    smoothing = torch.tensor([0.0, 0.1, 0.0])
    generator = torch.Generator().manual_seed(0)
    draw = lambda: (torch.randn(3, 16, *SHAPE, generator=generator), torch.randint(0, CLASSES, (3, 16), generator=generator))
    batches = [draw() for _ in range(20)]

    together = fuse(members(specs), seeds=[0, 1, 2]).train()
    train_steps(together, FusedOptimizer(together.parameters(), "adam", **hyper), lambda s: batches[s], smoothing)
    trained = []
    for k in range(3):
        alone = fuse([members(specs)[k]], seeds=[k]).train()
        start = alone.member_state_dict(0)
        one = {key: values[k : k + 1] for key, values in hyper.items()}
        own_batches = lambda step: (batches[step][0][k : k + 1], batches[step][1][k : k + 1])
        train_steps(alone, FusedOptimizer(alone.parameters(), "adam", **one), own_batches, smoothing[k : k + 1])
        trained.append((alone.member_state_dict(0), start))
        assert distance_ratio(together.member_state_dict(k), *trained[k]) <= TRAINED_APART, f"member {k}"
    neighbour = dict(zip(trained[2][0], together.member_state_dict(0).values()))  # same shapes, other names
    assert distance_ratio(neighbour, *trained[2]) > 100 * TRAINED_APART


@pytest.mark.rounding
def test_an_array_of_one_trains_as_the_plain_network_with_torch_optim():
    """Without dropout, the fused path (grouped conv, batched matmul, hand-written Adam) is the plain one."""
    spec = {**CNN, "dropout": 0.0}
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, *SHAPE, generator=generator), torch.randint(0, CLASSES, (16,), generator=generator)) for _ in range(20)]
    (plain,) = members([spec])
    start = {name: tensor.clone() for name, tensor in plain.state_dict().items()}
    fused = fuse(members([spec]), seeds=[0]).train()
    optimizer = build_optimizer(plain.parameters(), {"name": "adam", "lr": 1e-2, "weight_decay": 1e-3})
    for x, y in batches:
        loss = F.cross_entropy(plain(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hyper = {"lr": [1e-2], "momentum": [0.9], "nesterov": [False], "weight_decay": [1e-3]}
    as_array = lambda step: (batches[step][0][None], batches[step][1][None])
    train_steps(fused, FusedOptimizer(fused.parameters(), "adam", **hyper), as_array, torch.zeros(1))
    # Other kernels (batched matmul) sum in other orders, and training carries the rounding on.
    assert distance_ratio(fused.member_state_dict(0), plain.state_dict(), start) <= TRAINED_APART


# --- the loop: an array of members against each member trained alone ------------------------------

SMALL_CNN = {"type": "cnn", "channels": [4], "hidden": [16]}


def digits_splits(scale=1.0):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean()) / x.std() * scale
    y = torch.tensor(digits.target)
    return Split(x[:600], y[:600]), Split(x[1400:], y[1400:])


def array_setup():
    """Three trainings that differ in seed, dropout, learning rate, label smoothing, early stopping,
    epochs and (member 2) the data it reads."""
    shared_train, shared_val = digits_splits()
    other_train, other_val = digits_splits(scale=0.5)  # a data-side variant of the same shape
    specs = [SMALL_CNN, {**SMALL_CNN, "dropout": 0.2}, {**SMALL_CNN, "dropout": 0.3}]
    optims = [{"name": "adam", "lr": lr} for lr in (1e-2, 3e-3, 5e-3)]
    members = lambda: [  # fresh early-stopping state for every training
        Member(shared_train, shared_val, epochs=6, seed=0, schedule={"type": "cosine"}),
        Member(shared_train, shared_val, epochs=12, seed=1, label_smoothing=0.1, early_stopping=EarlyStopping(patience=1, min_delta=0.1)),
        Member(other_train, other_val, epochs=5, seed=2, schedule={"type": "step", "step_size": 2, "gamma": 0.5}, restore_best=False),
    ]
    return specs, optims, members


@pytest.mark.rounding
def test_a_fused_array_trains_each_member_as_it_trains_alone():
    specs, optims, members = array_setup()
    together = fused_array(specs, optims, [0, 1, 2], (1, 8, 8), 10, torch.device("cpu"))
    results = fit_array(together, members(), batch_size=32, progress=False)
    assert results[1].stop_reason == "patience" and results[1].epochs_run < 12  # early stopping did stop it
    for k in range(3):
        alone = fused_array(specs[k : k + 1], optims[k : k + 1], [k], (1, 8, 8), 10, torch.device("cpu"))
        start = alone.member_state_dict(0)
        (solo,) = fit_array(alone, members()[k : k + 1], batch_size=32, progress=False)
        outcome = lambda result: (result.epochs_run, result.best_epoch, result.stop_reason)
        assert outcome(results[k]) == outcome(solo)
        for fused_row, solo_row in zip(results[k].history, solo.history, strict=True):
            assert fused_row["val_accuracy"] == pytest.approx(solo_row["val_accuracy"], abs=0.005)
            assert fused_row["train_loss"] == pytest.approx(solo_row["train_loss"], rel=1e-3)  # measured: 2e-7
            assert fused_row["lr"] == pytest.approx(solo_row["lr"], rel=1e-9)
        assert distance_ratio(together.member_state_dict(k), alone.member_state_dict(0), start) <= TRAINED_APART, f"member {k}"


def test_the_array_reports_the_member_epochs_each_step_trains():
    """Progress within epochs for a bar counting member-epochs: one report per step, the running
    members over the epoch's steps, summing to the epochs each member ran (early stopping included)."""
    specs, optims, members = array_setup()
    heard = []
    results = fit_array(fused_array(specs, optims, [0, 1, 2], (1, 8, 8), 10, torch.device("cpu")), members(), batch_size=32, progress=False, on_steps=heard.append)
    steps = -(-len(members()[0].train.y) // 32)
    assert len(heard) == steps * max(r.epochs_run for r in results)
    assert heard[0] == pytest.approx(3 / steps) and heard[-1] == pytest.approx(1 / steps)  # one member trains on alone
    assert sum(heard) == pytest.approx(sum(r.epochs_run for r in results))


class Interrupt(Exception):
    pass


def test_a_killed_array_resumes_to_the_same_result(tmp_path):
    specs, optims, members = array_setup()
    build = lambda: fused_array(specs, optims, [0, 1, 2], (1, 8, 8), 10, torch.device("cpu"))
    whole = build()
    expected = fit_array(whole, members(), batch_size=32, progress=False)

    def interrupt(epoch):
        if epoch == 3:
            raise Interrupt

    checkpoint = tmp_path / "array.pt"
    with pytest.raises(Interrupt):
        fit_array(build(), members(), batch_size=32, progress=False, checkpoint=checkpoint, on_epoch_end=interrupt)
    resumed_array = build()
    resumed = fit_array(resumed_array, members(), batch_size=32, progress=False, checkpoint=checkpoint, resume=True)
    for k in range(3):
        assert resumed[k].resumed_from_epoch == 3
        assert [{**row, "seconds": 0} for row in resumed[k].history] == [{**row, "seconds": 0} for row in expected[k].history]
        assert all(torch.equal(resumed_array.member_state_dict(k)[n], t) for n, t in whole.member_state_dict(k).items())


# --- the default network: what holds between a fused member and the same network alone ------------
#
# A fused member computes what its network computes alone, in another order: a grouped convolution
# and a batched matmul may sum in other blocks than the plain layers, and BatchNorm over the K*C
# channels-last channels sums its statistics in float32 per thread where the plain channels-first
# layer sums in float64. So gradients agree to float rounding, and no closer. Weights after
# training do not stay within a fixed 1e-5: Adam divides by sqrt(v) + 1e-8, and the default CNN
# has gradients that are zero in exact arithmetic and 1e-9 to 1e-8 in float (the biases of the
# last convolution's BatchNorm: the BatchNorm after the next linear layer makes the gradient sum
# to zero over the batch, and max pooling and ReLU pass it on whole where the ReLU is open), so
# rounding sets the sign and size of a step of up to the learning rate. The plain loop does the
# same against itself on 1 thread and on 2, or with other CPU kernels
# (benchmarks/fused_equivalence.py). What holds after training is that the results are the same
# within what the test set can tell apart.

UNIT_ROUNDOFF = 2.0**-24  # float32
LONGEST_REDUCTION = 64 * 8 * 8  # batch x pixels: the first convolution's weight gradient and its BatchNorm's sums


def default_network():
    """The default configuration's model and optim sections and batch size."""
    from pipeline.config import load_config

    config = load_config()
    return config.model.model_dump(exclude={"sync_batch_norm"}), config.optim.model_dump(), config.train.batch_size


def standardised_digits():
    """scikit-learn's digits, 80% to train (1438) and 20% held out (359), standardised with the training part."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, held = order[359:], order[:359]
    x = (x - x[train].mean()) / x[train].std()
    return Split(x[train], y[train]), Split(x[held], y[held])


def plain_network(spec, seed):
    torch.manual_seed(seed)
    return build_model(spec, (1, 8, 8), 10)


def member_gradients(net, k, names):
    """Member k's gradients of a fused network, under its own network's parameter names."""
    holder = copy.deepcopy(net)
    with torch.no_grad():
        for slot, parameter in zip(holder.parameters(), net.parameters()):
            slot.copy_(parameter.grad)
    return {name: tensor for name, tensor in holder.member_state_dict(k).items() if name in names}


def largest_relative_gap(got, expected):
    """max over tensors of |got - expected|max / |expected|max."""
    return max(float((got[name] - tensor).abs().max() / tensor.abs().max()) for name, tensor in expected.items())


@pytest.mark.rounding
def test_first_gradients_of_fused_members_equal_the_networks_alone_to_float_rounding():
    """Four members of the default network, each on its own batch of 64 digits: the first backward
    pass gives each member the gradients its plain network gets from F.cross_entropy, to within
    n*u of each tensor's largest entry, where n = 4096 is the longest sum in the backward pass (64
    samples x 8x8 pixels) and u = 2**-24: the worst-case rounding of one float32 sum of n terms in
    any order. Measured on AVX2 and default kernels, 1 and 2 threads: at most 81 u (torch.func.vmap
    ensembling: 156 u; the plain network on 1 thread against 2: 44 u); a member's BatchNorm
    mixing with another's, or a wrong member, is off by far more (the last assertion)."""
    spec, _, batch_size = default_network()
    train, _ = standardised_digits()
    seeds = [0, 1, 2, 3]
    rows = torch.stack([torch.randperm(len(train.y), generator=torch.Generator().manual_seed(seed))[:batch_size] for seed in seeds])
    x, y = train.x[rows], train.y[rows]
    array = fused_array([spec] * 4, [{"name": "adam", "lr": 2e-3}] * 4, seeds, (1, 8, 8), 10, torch.device("cpu"))
    net = array.module.train()
    fused_cross_entropy(net(x), y).sum().backward()
    alone = []
    for k, seed in enumerate(seeds):
        model = plain_network(spec, seed).train()
        F.cross_entropy(model(x[k]), y[k]).backward()
        alone.append({name: p.grad for name, p in model.named_parameters()})
    tolerance = LONGEST_REDUCTION * UNIT_ROUNDOFF  # 2.4e-4
    for k in range(4):
        got = member_gradients(net, k, alone[k].keys())
        assert got.keys() == alone[k].keys()
        assert largest_relative_gap(got, alone[k]) <= tolerance, f"member {k}"
        assert largest_relative_gap(got, alone[(k + 1) % 4]) > 100 * tolerance  # the tolerance tells members apart


@pytest.mark.rounding
def test_fused_adam_is_torch_adam_bit_for_bit_given_the_same_gradients():
    """The default optimizer (Adam, no weight decay), per-member learning rates as float32 values
    (as the loop hands them over), gradients from 1e-10 to 1 (where Adam's eps decides the step):
    20 steps give torch.optim.Adam's weights exactly. Each element goes through the same
    elementwise operations on the same float32 operands, each rounded once, so neither the vector
    width nor the number of threads can tell them apart (checked on AVX2 and default kernels, 1
    and 2 threads). Before the bias corrections were computed in float64, every step was off by
    about 6e-6 of itself."""
    generator = torch.Generator().manual_seed(0)
    members, shape = 3, (64, 32, 3, 3)
    rates = [float(torch.tensor(rate, dtype=torch.float32)) for rate in (2e-3, 1e-3, 5e-3)]
    start = torch.randn(members, *shape, generator=generator)
    fused = torch.nn.Parameter(start.clone())
    optimizer = FusedOptimizer([fused], "adam", rates, [0.9] * members, [False] * members, [0.0] * members)
    alone = [torch.nn.Parameter(start[k].clone()) for k in range(members)]
    references = [build_optimizer([alone[k]], {"name": "adam", "lr": rates[k]}) for k in range(members)]
    scales = torch.logspace(-10, 0, shape[-1] * shape[-2]).view(shape[-2:])
    for _ in range(20):
        grad = torch.randn(members, *shape, generator=generator) * scales
        fused.grad = grad.clone()
        optimizer.step()
        for k in range(members):
            alone[k].grad = grad[k].clone()
            references[k].step()
    for k in range(members):
        assert torch.equal(fused.detach()[k], alone[k].detach()), f"member {k}"


@pytest.mark.rounding
def test_fused_members_train_to_the_results_they_reach_alone():
    """Four members of the default network trained two epochs by `fit_array` as one array, and each
    alone by `fit` (the plain network, torch's Adam). Their held-out results are the same within
    what 359 samples can resolve: correct answers within 4 samples (1.1 points), where one
    accuracy's binomial standard error at 97% is 3.2 samples and two independent accuracies would
    have to differ by about 9 to tell apart at 95%. Their weights differ by at most 15% of the
    distance training moved them (||w_fused - w_alone|| / ||w_alone - w_start|| over all weights
    and biases; two seeds differ by about 3 times it). Measured over ten members on AVX2 and
    default kernels, 1 and 2 threads (40 trainings): at most 2 samples and 4.7%; the plain loop
    on 1 thread against 2, and vmap ensembling, differ from it as much (benchmarks/fused_equivalence.py)."""
    spec, optim, batch_size = default_network()
    train, held = standardised_digits()
    seeds = [0, 1, 2, 3]
    settings = dict(epochs=2, restore_best=False)
    array = fused_array([spec] * 4, [optim] * 4, seeds, (1, 8, 8), 10, torch.device("cpu"))
    fit_array(array, [Member(train, held, seed=seed, **settings) for seed in seeds], batch_size=batch_size, progress=False)

    def correct(state):
        model = plain_network(spec, 0)
        model.load_state_dict(state)
        with torch.no_grad():
            return int((model.eval()(held.x).argmax(dim=1) == held.y).sum())

    for k, seed in enumerate(seeds):
        start = {name: tensor.clone() for name, tensor in plain_network(spec, seed).state_dict().items()}
        model = plain_network(spec, seed)
        fit(model, train, held, build_optimizer(model.parameters(), optim), batch_size=batch_size, seed=seed, progress=False, **settings)
        alone, together = model.state_dict(), array.member_state_dict(k)
        assert abs(correct(together) - correct(alone)) <= 4, f"member {k}"
        names = [name for name, _ in model.named_parameters()]
        gap = torch.cat([(together[name] - alone[name]).flatten() for name in names]).norm()
        moved = torch.cat([(alone[name] - start[name]).flatten() for name in names]).norm()
        assert gap <= 0.15 * moved, f"member {k}: {float(gap / moved):.3f} of the distance trained"
