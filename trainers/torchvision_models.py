"""torchvision architectures by name (`model.type=torchvision:resnet18`): random initialization,
`num_classes` set to the data's, and the first convolution taking the data's channel count."""

from __future__ import annotations

from typing import Sequence

from torch import nn


def build_torchvision(name: str, input_shape: Sequence[int], n_classes: int) -> nn.Module:
    try:
        import torchvision.models
    except ImportError:
        raise ValueError(f"model.type=torchvision:{name} needs torchvision: pip install 'gainsplit[torchvision]'.") from None
    if len(input_shape) != 3:
        raise ValueError(f"model.type=torchvision:{name} needs images (C, H, W), got input shape {tuple(input_shape)}.")
    available = torchvision.models.list_models(module=torchvision.models)  # the image classifiers
    if name not in available:
        raise ValueError(f"torchvision has no classification model {name!r}. Known: {', '.join(available)}.")
    model = torchvision.models.get_model(name, weights=None, num_classes=n_classes)
    return with_input_channels(model, input_shape[0])


def with_input_channels(model: nn.Module, channels: int) -> nn.Module:
    """`model` with its first convolution rebuilt for `channels` input channels (same kernel,
    stride, padding and width), when it expects another count."""
    name, first = next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if first is None or first.in_channels == channels:
        return model
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    replacement = nn.Conv2d(  # a stem convolution is a plain one (groups 1) in every torchvision classifier
        channels, first.out_channels, first.kernel_size, first.stride, first.padding, first.dilation,
        bias=first.bias is not None, padding_mode=first.padding_mode,
    )
    setattr(parent, attribute, replacement)
    return model
