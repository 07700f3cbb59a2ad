"""Ablation designs: factors tagged data-side or model-side, expanded into variants times seeds.

A factor is a dotted config key with a list of values; its first value is the baseline.
`full` crosses every factor with every other. `one_at_a_time` changes one factor at a time
from the baseline and adds the corners that separate the two sides: every data factor
changed, every model factor changed, and both; that is enough for each factor's effect and
for the data-by-model interaction at a fraction of the full design's cost. `list` runs the
variants given by name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Side = Literal["data", "model"]


class Factor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Side
    values: list[Any] = Field(min_length=2)


class AblationConfig(BaseModel):
    """The `ablation:` section of a config file."""

    model_config = ConfigDict(extra="forbid")

    design: Literal["full", "one_at_a_time", "list"] = "one_at_a_time"
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # What each seed varies: `train.seed` always; `data.seed` (the split) and `augment.seed` when listed.
    vary: list[Literal["train", "split", "augment"]] = Field(default_factory=lambda: ["train"])
    factors: dict[str, Factor] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _design_has_what_it_needs(self) -> "AblationConfig":
        if self.design == "list" and not self.variants:
            raise ValueError("design 'list' needs 'variants': a mapping of variant name to overrides")
        if self.design != "list" and not self.factors:
            raise ValueError(f"design {self.design!r} needs 'factors'")
        if "train" not in self.vary or len(set(self.vary)) != len(self.vary):
            raise ValueError(f"vary must list 'train' (the seed always sets train.seed) and each source once, got {self.vary}")
        return self

    def seed_overrides(self, seed: int) -> list[str]:
        """The settings one seed of the ablation sets."""
        keys = {"train": "train.seed", "split": "data.seed", "augment": "augment.seed"}
        return [f"{keys[source]}={seed}" for source in self.vary]


@dataclass(frozen=True)
class Variant:
    """One configuration of the ablation: its name, its settings and which factors it changes."""

    name: str
    settings: dict[str, Any]
    changed: tuple[str, ...] = field(default=())

    def overrides(self) -> list[str]:
        """Dotted `key=value` overrides, values written as YAML flow text."""
        return [f"{key}={_flow(value)}" for key, value in self.settings.items()]


def _flow(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...")


def _name(settings: dict[str, Any], baseline: dict[str, Any]) -> str:
    changed = [f"{key}={_flow(value)}" for key, value in settings.items() if value != baseline[key]]
    return ", ".join(changed) if changed else "baseline"


def _variant(settings: dict[str, Any], baseline: dict[str, Any]) -> Variant:
    changed = tuple(key for key, value in settings.items() if value != baseline[key])
    return Variant(_name(settings, baseline), settings, changed)


def expand(ablation: AblationConfig) -> list[Variant]:
    """The distinct variants of the design, baseline first."""
    if ablation.design == "list":
        return [Variant(name, dict(settings), tuple(settings)) for name, settings in ablation.variants.items()]
    factors = ablation.factors
    baseline = {key: factor.values[0] for key, factor in factors.items()}
    if ablation.design == "full":
        combos = itertools.product(*(factor.values for factor in factors.values()))
        return [_variant(dict(zip(factors, combo)), baseline) for combo in combos]
    variants = [_variant(baseline, baseline)]
    for key, factor in factors.items():
        for value in factor.values[1:]:
            variants.append(_variant({**baseline, key: value}, baseline))
    for sides in (("data",), ("model",), ("data", "model")):
        corner = {key: (f.values[-1] if f.side in sides else f.values[0]) for key, f in factors.items()}
        if sum(corner[key] != baseline[key] for key in factors) > 1:
            variants.append(_variant(corner, baseline))
    unique = {variant.name: variant for variant in variants}
    return list(unique.values())
