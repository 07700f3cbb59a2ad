"""Networks by name: the built-in `cnn` and `mlp`, torchvision architectures
(`torchvision:<name>`), and factories that plugins register with `register_model`.

A factory is `build(options, input_shape, n_classes) -> nn.Module`: `options` is the `model`
config section as a dict (its `options` mapping holds the plugin's own settings). It says which
of the shared switches it applies (`honours`); setting one it ignores is an error, never a
silent no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # the configuration checks model types without importing torch
    from torch import nn

SWITCHES = ("batch_norm", "dropout", "activation", "init")
BUILT_IN = ("auto", "cnn", "mlp")
TORCHVISION = "torchvision:"

Factory = Callable[[dict[str, Any], tuple[int, ...], int], "nn.Module"]


@dataclass(frozen=True)
class ModelFactory:
    name: str
    build: Factory
    honours: tuple[str, ...]


MODELS: dict[str, ModelFactory] = {}


def register_model(name: str, honours: Sequence[str] = ()) -> Callable[[Factory], Factory]:
    """Register `build(options, input_shape, n_classes) -> nn.Module` as `model.type: <name>`.

    `honours` names the switches of `SWITCHES` the factory applies (read from `options`); an
    explicit setting of any other is refused when the config is loaded.
    """
    unknown = sorted(set(honours) - set(SWITCHES))
    if unknown:
        raise ValueError(f"register_model({name!r}, honours=...) names unknown switches {unknown}; known: {', '.join(SWITCHES)}.")
    if name in BUILT_IN or name.startswith(TORCHVISION) or ":" in name:
        raise ValueError(f"register_model: {name!r} is taken by a built-in type or has a ':'; choose another name.")

    def decorate(build: Factory) -> Factory:
        MODELS[name] = ModelFactory(name, build, tuple(honours))
        return build

    return decorate


def known_types() -> list[str]:
    return [*BUILT_IN, *sorted(MODELS), f"{TORCHVISION}<name>"]


def check_type(kind: str) -> None:
    """A `ValueError` listing the known types when `kind` is none of them."""
    if kind in BUILT_IN or kind in MODELS or (kind.startswith(TORCHVISION) and len(kind) > len(TORCHVISION)):
        return
    raise ValueError(
        f"Unknown model type {kind!r}. Known: {', '.join(known_types())}. A plugin's type is known once its "
        "module, named in model.plugins, has run @register_model."
    )


def honoured(kind: str) -> tuple[str, ...]:
    """The switches a model type applies: all for the built-in ones, none for torchvision's."""
    check_type(kind)
    if kind in BUILT_IN:
        return SWITCHES
    return MODELS[kind].honours if kind in MODELS else ()


def ignored_switches(kind: str, explicit: set[str]) -> list[str]:
    """The switches set explicitly (`explicit`) that a model of `kind` does not apply."""
    applies = honoured(kind)
    return [switch for switch in SWITCHES if switch in explicit and switch not in applies]
