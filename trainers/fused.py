"""K networks of one architecture as one module (HFTA's horizontal fusion), member by member
equal to the K networks alone.

A convolution becomes a grouped convolution over the members' concatenated channels, a
linear layer a batched matrix product over a `(K, in, out)` weight, and BatchNorm runs over
the K*C channels, so statistics never mix across members. Dropout draws each member's mask
from a counter-based hash of the member's own seed, so a member's masks do not depend on
which other members it trains beside (a solo run is an array of one).

Layouts: a fused network takes `(K, B, *sample_shape)` and returns `(K, B, classes)`. Inside,
convolutional layers see `(B, K*C, H, W)` ("channels") and dense ones `(K, B, F)` ("stacked");
the network converts only where consecutive layers want different layouts.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STACKED, CHANNELS, ANY = "stacked", "channels", "any"
DROPOUT_STREAM = 2  # beside the loop's shuffle (0) and augmentation (1) streams
_MASK32 = 0xFFFFFFFF


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """`(K, B, C, H, W)` -> `(B, K*C, H, W)`; channels-last in memory on the CPU, where pooling and
    convolution over many channels run many times faster that way (docs/performance.md)."""
    members, batch, channels, height, width = x.shape
    x = x.transpose(0, 1).reshape(batch, members * channels, height, width)
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def to_stacked(x: torch.Tensor, members: int) -> torch.Tensor:
    """`(B, K*C, H, W)` -> `(K, B, C, H, W)` (a view)."""
    return x.view(x.shape[0], members, x.shape[1] // members, *x.shape[2:]).transpose(0, 1)


def _slices(tensor: torch.Tensor, members: int) -> torch.Tensor:
    """A fused tensor's member-major view `(K, ...)` (conv and BatchNorm tensors concatenate members along dim 0)."""
    return tensor.view(members, tensor.shape[0] // members, *tensor.shape[1:])


class FusedConv2d(nn.Module):
    """K `Conv2d` layers as one grouped convolution; weights `(K*out, in/groups, kh, kw)`."""

    layout = CHANNELS

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        self.members, self.groups = len(convs), first.groups * len(convs)
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.weight = nn.Parameter(torch.cat([conv.weight.detach() for conv in convs]))
        self.bias = nn.Parameter(torch.cat([conv.bias.detach() for conv in convs])) if first.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        state = {"weight": _slices(self.weight, self.members)[k]}
        if self.bias is not None:
            state["bias"] = _slices(self.bias, self.members)[k]
        return state


class FusedLinear(nn.Module):
    """K `Linear` layers as one batched matrix product; weight `(K, in, out)`, bias `(K, 1, out)`."""

    layout = STACKED

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([linear.weight.detach().T for linear in linears]).contiguous())
        has_bias = linears[0].bias is not None
        self.bias = nn.Parameter(torch.stack([linear.bias.detach() for linear in linears]).unsqueeze(1)) if has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        state = {"weight": self.weight[k].T}
        if self.bias is not None:
            state["bias"] = self.bias[k, 0]
        return state


def _fused_batch_norm(norms: Sequence[nn.modules.batchnorm._BatchNorm], kind: type[nn.Module]) -> nn.Module:
    first = norms[0]
    fused = kind(first.num_features * len(norms), first.eps, first.momentum, first.affine, first.track_running_stats)
    with torch.no_grad():
        for name, tensor in fused.named_parameters(recurse=False):
            tensor.copy_(torch.cat([getattr(norm, name) for norm in norms]))
        for name in ("running_mean", "running_var"):
            if getattr(fused, name) is not None:
                getattr(fused, name).copy_(torch.cat([getattr(norm, name) for norm in norms]))
        if fused.num_batches_tracked is not None:
            fused.num_batches_tracked.copy_(first.num_batches_tracked)
    start = first.num_batches_tracked if first.num_batches_tracked is not None else torch.zeros((), dtype=torch.long)
    fused.count_members(len(norms), start)
    return fused


class _MemberCounts:
    """Each member's own `num_batches_tracked` (members that stop early have seen fewer batches)."""

    members: int

    def count_members(self, members: int, start: torch.Tensor) -> None:
        self.members = members
        self.register_buffer("member_batches", start.expand(members).clone())

    def count_batch(self) -> None:
        if self.training and self.track_running_stats:
            self.member_batches += 1

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        state = {name: _slices(tensor, self.members)[k] for name, tensor in self.named_parameters(recurse=False)}
        if self.track_running_stats:
            state["running_mean"] = _slices(self.running_mean, self.members)[k]
            state["running_var"] = _slices(self.running_var, self.members)[k]
            state["num_batches_tracked"] = self.member_batches[k]
        return state


class FusedBatchNorm2d(_MemberCounts, nn.BatchNorm2d):
    """K `BatchNorm2d` layers as one over the K*C channels: per member by construction."""

    layout = CHANNELS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count_batch()
        return super().forward(x)


class FusedBatchNorm1d(_MemberCounts, nn.BatchNorm1d):
    """K `BatchNorm1d` layers as one over K*F features, on stacked `(K, B, F)` input."""

    layout = STACKED

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count_batch()
        members, batch, features = x.shape
        flat = x.transpose(0, 1).reshape(batch, members * features)
        return super().forward(flat).view(batch, members, features).transpose(0, 1)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds) on int64 tensors holding values < 2**32."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


class _NoMemberState:
    """A layer without weights: a member's state has nothing of it."""

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        return {}


class FusedDropout(_NoMemberState, nn.Module):
    """Dropout with each member's own rate (0 for members that have none) and its own masks.

    A member's masks depend only on its key (its seed and the layer's position in its own
    network), the call count and the element's index within the member, so member k draws the
    same masks whether it trains alone or beside others, and a resumed run draws what the
    uninterrupted one drew (the call count is a buffer). On CUDA a mask bit is a hash of those,
    computed for every member in one pass; on the CPU, where that hash costs more than a random
    draw, each member draws 16-bit words from an SFC64 stream seeded by its key and the call
    count (numpy's raw words, faster than `torch.rand` with a seeded generator), so there its
    rate is resolved to 1/65536. Under DDP each rank mixes its `rank` into the keys
    (rank 0 keeps them as they are), so ranks draw different masks for their different samples.
    On the CPU the members that drop nothing are passed through and only the dropping members'
    slices are multiplied, forward and backward (`_ScaleMembers`); on CUDA every member is
    multiplied by its noise (ones for those), as this code ran when it was last run on a GPU.
    """

    layout = ANY

    def __init__(self, rates: Sequence[float], seeds: torch.Tensor, positions: Sequence[int]) -> None:
        super().__init__()
        self.members = len(rates)
        probabilities = torch.tensor(rates, dtype=torch.float64)
        self.register_buffer("threshold", torch.floor(probabilities * 2.0**32).to(torch.int64))
        self.register_buffer("scale", (1.0 / (1.0 - probabilities)).to(torch.float32))
        self.register_buffer("keys", _mix32(_mix32(seeds ^ _mix32(torch.tensor(positions, dtype=torch.int64)))))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        # Only the members that drop anything draw masks; the others' noise is 1.
        self.dropping_members = [k for k, rate in enumerate(rates) if rate > 0]
        self.register_buffer("dropping", torch.tensor(self.dropping_members, dtype=torch.int64))
        self.active = len(self.dropping) > 0
        self.everyone = len(self.dropping) == len(rates)
        self.hashed: bool | None = None  # how masks are drawn; None: hashed on CUDA, drawn from generators on the CPU
        self.rank = 0  # not state: every rank loads rank 0's checkpoint

    def forward(self, x: torch.Tensor, layout: str) -> torch.Tensor:
        if not (self.training and self.active):
            return x
        self.calls += 1
        if layout == STACKED:  # (K, B, ...): member k's sample is x[k]
            members, member_dim = x, 0
            sample_shape = tuple(x.shape[1:])
        else:  # (B, K*C, H, W): member k's sample is its own (B, C, H, W)
            batch, channels = x.shape[0], x.shape[1] // self.members
            members, member_dim = x.view(batch, self.members, channels, *x.shape[2:]), 1
            sample_shape = (batch, channels, *x.shape[2:])
        keys = self.keys[self.dropping] if self.rank == 0 else _mix32(self.keys[self.dropping] ^ _mix32(torch.tensor(self.rank)))
        if self.hashed if self.hashed is not None else x.device.type != "cpu":
            dropped = members * self._hashed_noise(keys, sample_shape, members, member_dim)
        else:
            dropped = _ScaleMembers.apply(members, self.dropping_members, member_dim, *self._drawn_noise(keys, members, member_dim, layout))
        return dropped.view(x.shape) if layout == CHANNELS else dropped

    def _hashed_noise(self, keys: torch.Tensor, sample_shape: tuple[int, ...], members: torch.Tensor, member_dim: int) -> torch.Tensor:
        """Every member's noise in one pass, shaped like `members` (ones for the members that do not
        drop): kept where the hash of (key, call, element index) is at or above the threshold."""
        member_shape = [1] * members.dim()
        member_shape[member_dim] = -1
        index = torch.arange(math.prod(sample_shape), device=members.device).view(sample_shape).unsqueeze(member_dim)
        base = _mix32(keys ^ (self.calls & _MASK32))
        keep = _mix32(base.view(member_shape) ^ index) >= self.threshold[self.dropping].view(member_shape)
        drawn = keep.to(members.dtype) * self.scale[self.dropping].view(member_shape).to(members.dtype)
        if self.everyone:
            return drawn
        noise = torch.ones(members.shape, dtype=members.dtype, device=members.device)
        return noise.index_copy_(member_dim, self.dropping, drawn)

    def _drawn_noise(self, keys: torch.Tensor, members: torch.Tensor, member_dim: int, layout: str) -> list[torch.Tensor]:
        """Each dropping member's noise (its key in `keys`) for its slice of `members`: kept where
        the i-th 16-bit word of its (key, call) stream is at or above the top 16 bits of its
        threshold, for the i-th element in channels-last order in the channels layout (the order
        the CPU keeps those activations in, so the multiply walks both in step), else in order."""
        calls = int(self.calls)
        noise = []
        for key, k in zip(keys.tolist(), self.dropping_members):
            own = members.select(member_dim, k)
            shape = own.shape
            words = np.random.SFC64([key, calls]).random_raw((math.prod(shape) + 3) // 4).view(np.uint16)[: math.prod(shape)]
            keep = torch.from_numpy(words >= int(self.threshold[k]) >> 16)
            keep = keep.view(shape[0], *shape[2:], shape[1]).movedim(-1, 1) if layout == CHANNELS else keep.view(shape)
            noise.append(torch.empty_like(own).copy_(keep).mul_(float(self.scale[k])))
        return noise


class _ScaleMembers(torch.autograd.Function):
    """A copy of `members` whose slices at `index` along `dim` are multiplied by their noise (their
    dropout) and whose other members pass through, and the same for the gradient: one full-size
    copy each way, where multiplying every member by noise that is mostly ones reads and writes
    the whole array four times."""

    @staticmethod
    def forward(ctx, members: torch.Tensor, index: list[int], dim: int, *noise: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(*noise)
        ctx.index, ctx.dim = index, dim
        return _scale_slices(members, noise, index, dim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        noise = ctx.saved_tensors
        return (_scale_slices(grad, noise, ctx.index, ctx.dim), None, None, *[None] * len(noise))


def _scale_slices(tensor: torch.Tensor, noise: Sequence[torch.Tensor], index: list[int], dim: int) -> torch.Tensor:
    scaled = tensor.clone()
    for k, member_noise in zip(index, noise):
        scaled.select(dim, k).mul_(member_noise)
    return scaled


class FusedShared(_NoMemberState, nn.Module):
    """A weightless layer every member applies alike: an activation (any layout) or pooling
    (the channels layout, where each channel pools on its own)."""

    def __init__(self, module: nn.Module, layout: str) -> None:
        super().__init__()
        self.module, self.layout = module, layout

    def forward(self, x: torch.Tensor, layout: str | None = None) -> torch.Tensor:
        return self.module(x)


class FusedFlatten(_NoMemberState, nn.Module):
    """Flatten each member's sample: `(K, B, ...)` -> `(K, B, F)`."""

    layout = STACKED

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid)


class FusedNet(nn.Module):
    """K members as one module: `(K, B, *sample_shape)` in, `(K, B, classes)` out."""

    def __init__(self, layers: Sequence[nn.Module], names: Sequence[Sequence[str | None]], seeds: torch.Tensor) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.members = len(names)
        self.names = [list(member) for member in names]  # member k's state_dict prefix of each layer, or None
        self.register_buffer("seeds", seeds.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = STACKED
        for layer in self.layers:
            if layer.layout == CHANNELS and layout == STACKED:
                x, layout = to_channels(x), CHANNELS
            elif layer.layout == STACKED and layout == CHANNELS:
                x, layout = to_stacked(x, self.members), STACKED
            x = layer(x, layout) if layer.layout == ANY else layer(x)
        return to_stacked(x, self.members) if layout == CHANNELS else x

    def member_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's weights under the names its own network uses (`net.0.weight`, ...), as copies."""
        state = {}
        for layer, prefix in zip(self.layers, self.names[k]):
            if prefix is not None:
                state.update({f"{prefix}.{name}": tensor.detach().clone() for name, tensor in layer.member_state(k).items()})
        return state

    def load_member_state_dict(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Write member k's slices from a state dict of its own network (the inverse of `member_state_dict`)."""
        with torch.no_grad():
            for layer, prefix in zip(self.layers, self.names[k]):
                if prefix is None:
                    continue
                for name, target in layer.member_state(k).items():
                    target.copy_(state[f"{prefix}.{name}"])


def draw_as_rank(net: nn.Module, rank: int) -> None:
    """Make every fused dropout layer of `net` draw this DDP rank's masks."""
    for layer in net.modules():
        if isinstance(layer, FusedDropout):
            layer.rank = rank


def member_seeds(seeds: Sequence[int]) -> torch.Tensor:
    """Each member's 32-bit dropout seed, derived from its `train.seed` alone."""
    return torch.tensor(
        [int(np.random.SeedSequence([seed, DROPOUT_STREAM]).generate_state(1)[0]) for seed in seeds], dtype=torch.int64
    )


def _same(modules: Sequence[nn.Module], where: str) -> None:
    first = modules[0]
    for k, module in enumerate(modules[1:], start=1):
        same_shapes = [p.shape for p in first.parameters()] == [p.shape for p in module.parameters()]
        if type(module) is not type(first) or repr(module) != repr(first) or not same_shapes:
            raise ValueError(f"Cannot fuse: member {k} has {module!r} at {where} where member 0 has {first!r}.")


def _fused_form(first: nn.Module, where: str) -> Callable[[Sequence[nn.Module]], nn.Module]:
    """How layers like `first` fuse, or a ValueError saying they do not: read from the layer's
    type and settings alone, so asking runs no tensor operation."""
    if isinstance(first, nn.Conv2d):
        if first.padding_mode != "zeros":
            raise ValueError(f"Cannot fuse {first!r} at {where}: only zero padding fuses.")
        return FusedConv2d
    if isinstance(first, nn.Linear):
        return FusedLinear
    if isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        kind = FusedBatchNorm2d if isinstance(first, nn.BatchNorm2d) else FusedBatchNorm1d
        return lambda modules: _fused_batch_norm(modules, kind)
    if isinstance(first, ACTIVATION_TYPES):
        return lambda modules: FusedShared(modules[0], ANY)
    if isinstance(first, (nn.MaxPool2d, nn.AvgPool2d)):
        return lambda modules: FusedShared(modules[0], CHANNELS)
    if isinstance(first, nn.Flatten) and first.start_dim == 1 and first.end_dim == -1:
        return lambda modules: FusedFlatten()
    raise ValueError(f"Cannot fuse {first!r} at {where}: no fused form of this layer.")


def _fuse_layer(modules: Sequence[nn.Module], where: str) -> nn.Module:
    _same(modules, where)
    return _fused_form(modules[0], where)(modules)


def fuse(models: Sequence[nn.Module], seeds: Sequence[int]) -> FusedNet:
    """One fused network from K networks that share an architecture (a `net` Sequential each),
    up to their dropout rates: a member without a Dropout layer where others have one gets rate 0.
    `seeds` are the members' `train.seed`s, from which their dropout masks are drawn."""
    if not models or len(models) != len(seeds):
        raise ValueError(f"fuse needs one seed per model, got {len(models)} models and {len(seeds)} seeds.")
    sequences = [list(model.net) for model in models]
    positions = [0] * len(models)
    seed_tensor = member_seeds(seeds)
    layers: list[nn.Module] = []
    names: list[list[str | None]] = [[] for _ in models]
    while any(p < len(s) for p, s in zip(positions, sequences)):
        current = [s[p] if p < len(s) else None for p, s in zip(positions, sequences)]
        where = f"layer {len(layers)} (net.{positions[0]} of member 0)"
        dropouts = [isinstance(m, nn.Dropout) for m in current]
        if any(dropouts):
            rates = [m.p if d else 0.0 for m, d in zip(current, dropouts)]
            layers.append(FusedDropout(rates, seed_tensor, positions))
            for k, has in enumerate(dropouts):
                names[k].append(None)
                positions[k] += has
            continue
        if any(m is None for m in current):
            raise ValueError(f"Cannot fuse: the members have different depths at {where}.")
        layers.append(_fuse_layer(current, where))
        for k in range(len(models)):
            names[k].append(f"net.{positions[k]}")
            positions[k] += 1
    return FusedNet(layers, names, seed_tensor)


def fusible(model: nn.Module) -> bool:
    """Whether `fuse` takes networks like `model`: layers in a `net` nn.Sequential, each a Conv2d
    (zero padding), Linear, BatchNorm, ReLU-family activation, pooling, Flatten or Dropout, as the
    built-in CNN and MLP are. Asked of the layers' types and settings, so a network built on the
    meta device answers without allocating or computing anything."""
    if not isinstance(getattr(model, "net", None), nn.Sequential):
        return False
    try:
        for position, layer in enumerate(model.net):
            if not isinstance(layer, nn.Dropout):
                _fused_form(layer, f"net.{position}")
    except ValueError:
        return False
    return True


def fused_cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: torch.Tensor | None = None) -> torch.Tensor:
    """Each member's mean cross-entropy, `(K,)`, with its own label smoothing `(K,)` (PyTorch's
    formula: `(1 - e) * nll + e * mean over classes of -log p`; None when no member smooths)."""
    members, batch, classes = logits.shape
    nll = F.cross_entropy(logits.reshape(members * batch, classes).float(), target.reshape(-1), reduction="none").view(members, batch)
    if label_smoothing is None:
        return nll.mean(dim=1)
    uniform = -torch.log_softmax(logits.float(), dim=-1).mean(dim=-1)
    smoothing = label_smoothing.to(nll.dtype).view(-1, 1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean(dim=1)
