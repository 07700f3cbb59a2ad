"""Unsupervised pretraining of a classifier's trunk: a denoising autoencoder whose encoder is the
network without its classifier layer, trained on unlabelled samples, whose encoder weights then
initialise the classifier (Vincent et al., 2008; Erhan et al., 2010).

The corruption is masking noise: each input value is set to 0 with probability `noise` (0 is
the mean of standardized data), and the decoder, one Linear layer from the trunk's features back
to the input, is trained to reconstruct the clean sample (mean squared error). Only the trunk's
weights leave this module; the decoder is thrown away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trainers.models import CNN, MLP, build_model


@dataclass(frozen=True)
class PretrainSettings:
    """How the autoencoder trains: epochs, Adam's learning rate, the masking probability, the batch size."""

    epochs: int = 10
    lr: float = 1e-3
    noise: float = 0.2
    batch_size: int = 128


@dataclass(frozen=True)
class Pretrained:
    """The trunk's weights under the classifier's own `state_dict` names, and the reconstruction
    loss of each epoch (on the corrupted training samples it trained on)."""

    trunk: dict[str, torch.Tensor]
    losses: list[float]


def split_trunk(model: nn.Module) -> tuple[nn.Sequential, str]:
    """A built-in network's trunk (every layer but the classifier) and the `state_dict` prefix of
    its classifier layer; a `ValueError` for a network that has no such split (a plugin's)."""
    if not isinstance(model, (MLP, CNN)):
        raise ValueError(f"autoencoder pretraining needs a built-in network (model.type auto, mlp or cnn), not {type(model).__name__}")
    layers = list(model.net)
    return nn.Sequential(*layers[:-1]), f"net.{len(layers) - 1}."


def with_trunk(state: Mapping[str, torch.Tensor], trunk: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` (a network's `state_dict`) with every trunk weight replaced by the pretrained one
    (a 0-d count read back from a cache as shape (1,) takes its place's shape)."""
    missing = sorted(set(trunk) - set(state))
    if missing:
        raise ValueError(f"the pretrained trunk holds weights this network lacks: {', '.join(missing[:3])}")
    return {
        name: trunk[name].to(tensor.device, tensor.dtype).reshape(tensor.shape) if name in trunk else tensor
        for name, tensor in state.items()
    }


def _batches(samples: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    order = torch.randperm(samples, generator=generator)
    yield from order.split(batch_size)


def pretrain_trunk(
    spec: Mapping[str, Any],
    x_train: np.ndarray,
    n_classes: int,
    settings: PretrainSettings,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> Pretrained:
    """Train a denoising autoencoder on `x_train` (the training split only: no labels, and never
    the validation or test samples) whose encoder is the trunk of `build_model(spec, ...)`, built
    after `torch.manual_seed(seed)` as the classifier would be; return the trunk's weights."""
    if not 0 <= settings.noise < 1:
        raise ValueError(f"model.pretrain.noise must be in [0, 1), got {settings.noise}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model({**spec, "init": "default"}, x_train.shape[1:], n_classes)
    trunk, head = split_trunk(model)
    features = getattr(model.net, head.removeprefix("net.").rstrip(".")).in_features
    decoder = nn.Linear(features, math.prod(x_train.shape[1:]))
    autoencoder = nn.Sequential(trunk, decoder).to(device).train()
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=settings.lr)
    samples = torch.from_numpy(np.array(x_train, dtype=np.float32))  # a copy: the cache's arrays are read-only maps or shared with training
    losses = []
    for _ in tqdm(range(settings.epochs), desc="pretraining", unit="epoch", disable=not progress):
        total = 0.0
        for index in _batches(len(samples), settings.batch_size, generator):
            if len(index) < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in trunk.modules()):
                continue  # batch norm cannot train on one sample
            clean = samples[index].to(device)
            kept = torch.rand(clean.shape, generator=generator).to(device) >= settings.noise
            loss = nn.functional.mse_loss(autoencoder(clean * kept), clean.flatten(1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / len(samples))
    weights = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items() if not name.startswith(head)}
    return Pretrained(weights, losses)

