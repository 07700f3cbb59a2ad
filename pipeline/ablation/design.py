"""Ablation designs: factors tagged data-side or model-side, expanded into variants times seeds.

A factor is a dotted config key with a list of values; its first value is the baseline.
`full` crosses every factor with every other. `fractional` runs a regular 2^(k-p) fraction of
it (two values per factor, 4 to 8 factors, resolution IV or better: main effects are clear of
two-factor interactions, which are estimable up to the aliases the report names).
`one_at_a_time` changes one factor at a time from the baseline, removes one at a time from
the configuration with every change made (unless `remove_one` is false), and adds the corners that separate the two sides:
every data factor changed, every model factor changed, and both; that is enough for each
factor's effect in both directions and for the interactions within and between the sides at
a fraction of the full design's cost. `list` runs the variants given by name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config import ConfigError, Seed, dotted, validate_model
from pipeline.keys import canonical_json

Side = Literal["data", "model"]
# The configuration's sections by the side of the pipeline whose stages read them.
SECTIONS = {"data": ("data", "augment", "scale"), "model": ("model", "optim", "schedule", "early_stop", "train")}
DEFAULT_FOLDS = 5
MIN_FIRST_LOOK = 3  # estimates (seeds, or seeds x folds) at a seeds-until-decided ablation's first look
MOST_LOOKS = 20  # looks a seeds-until-decided ablation may plan
# What k-fold resampling sets in every run: no factor or variant may vary it.
FOLD_KEYS = ("data.folds", "data.fold", "data.test_fraction", "data.use_official_test", "data.test_source")


class Factor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    side: Side
    values: list[Any] = Field(min_length=2)

    @field_validator("values")
    @classmethod
    def _each_value_once(cls, values: list[Any]) -> list[Any]:
        """A repeated value would train the same variant twice and count it twice, narrowing the intervals."""
        seen: list[str] = []
        for value in values:
            text = canonical_json(value)  # 1 and 1.0 are one setting
            if text in seen:
                raise ValueError(f"{value!r} is listed twice; each value of a factor once")
            seen.append(text)
        return values


class Resampling(BaseModel):
    """How each seed's runs are tested: one held-out test split (`holdout`, the data section's
    own), or `kfold`: each seed trains `folds` runs per variant, each tested on one fold of a
    stratified partition that the seed draws, so every sample is tested once per seed by a model
    that did not train on it (see `datasets.splits.kfold_split`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["holdout", "kfold"] = "holdout"
    folds: int = Field(DEFAULT_FOLDS, ge=2, le=20)

    @model_validator(mode="after")
    def _folds_only_for_kfold(self) -> "Resampling":
        """Another number of folds with a holdout would be ignored (the default, as a dumped config holds it, is not an error)."""
        if self.kind == "holdout" and self.folds != DEFAULT_FOLDS:
            raise ValueError(f"resampling.folds={self.folds} is set but resampling.kind is 'holdout'; set kind: kfold")
        return self


class UntilDecided(BaseModel):
    """Seeds until decided: after the listed seeds, add `step` seeds at a time (the next unused
    integers; default as many as listed) until every effect is decided or its interval is
    narrower than `resolution` (in the metric's report units, points for accuracy), or
    `max_seeds` have trained. Every look is planned up front, and the report's p-values and
    intervals are repeated ones over all of them, against `boundary` (`pipeline.ablation.sequential`)."""

    model_config = ConfigDict(extra="forbid")

    max_seeds: int = Field(ge=2, le=1000)
    resolution: float | None = Field(None, gt=0)
    step: int | None = Field(None, ge=1)
    boundary: Literal["obrien_fleming", "pocock"] = "obrien_fleming"


class AblationConfig(BaseModel):
    """The `ablation:` section of a config file."""

    model_config = ConfigDict(extra="forbid")

    design: Literal["full", "fractional", "one_at_a_time", "list"] = "one_at_a_time"
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # one_at_a_time: also remove each change from the configuration with every change made.
    remove_one: bool = True
    # What each seed varies: `train.seed` always; `data.seed` (the split) and `augment.seed` when listed.
    vary: list[Literal["train", "split", "augment"]] = Field(default_factory=lambda: ["train"])
    factors: dict[str, Factor] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # What effects are computed on and the best variant is chosen by (on validation); the report
    # can be re-rendered in any other (`python -m pipeline report DIR --metric NAME`).
    metric: Literal["accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc"] = "accuracy"
    # The smallest effect worth resolving, in the metric's report units (points for accuracy-like
    # metrics): `ablate --plan` says whether the design can decide it and how many seeds would.
    resolution: float | None = Field(None, gt=0)
    resampling: Resampling = Field(default_factory=Resampling)
    until_decided: UntilDecided | None = None

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_numbers(cls, seeds: Any) -> Any:
        if isinstance(seeds, list) and any(isinstance(seed, bool) for seed in seeds):
            raise ValueError(f"seeds are integers, not booleans: {seeds}")
        return seeds

    @field_validator("seeds")
    @classmethod
    def _each_seed_once(cls, seeds: list[int]) -> list[int]:
        """A repeated seed would train the same runs again and count them as independent, narrowing the intervals."""
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"seed {repeated[0]} is listed twice in {seeds}; each seed once")
        return seeds

    @field_validator("factors")
    @classmethod
    def _sides_match_the_stages(cls, factors: dict[str, Factor]) -> dict[str, Factor]:
        """A factor's side is the side of the stage that reads its key: a data-stage setting tagged
        model (or the other way round) would be counted in the wrong side's effect."""
        for key, factor in factors.items():
            section = key.split(".")[0]
            for side, sections in SECTIONS.items():
                if section in sections and factor.side != side:
                    stage = {"data": "collect", "augment": "augment", "scale": "scale"}.get(section, "train")
                    kind = "a data stage" if side == "data" else "the model side"
                    raise ValueError(f"factor {key} is read by the {stage} stage ({kind}) but is declared side: {factor.side}; declare side: {side}")
        return factors

    @model_validator(mode="after")
    def _design_has_what_it_needs(self) -> "AblationConfig":
        if self.design == "list" and not self.variants:
            raise ValueError("design 'list' needs 'variants': a mapping of variant name to overrides")
        named: dict[str, str] = {}
        for name, overrides in self.variants.items():
            text = canonical_json(overrides)
            if text in named:
                raise ValueError(f"variants {named[text]!r} and {name!r} have the same settings; each configuration once")
            named[text] = name
        if self.design != "list" and not self.factors:
            raise ValueError(f"design {self.design!r} needs 'factors'")
        if self.design == "fractional":
            if len(self.factors) not in GENERATORS:
                raise ValueError(f"design 'fractional' takes 4 to 8 factors, got {len(self.factors)} (use 'full' for fewer)")
            two_valued = [key for key, factor in self.factors.items() if len(factor.values) != 2]
            if two_valued:
                raise ValueError(f"design 'fractional' needs exactly two values per factor; {', '.join(two_valued)} has more")
        if "train" not in self.vary or len(set(self.vary)) != len(self.vary):
            raise ValueError(f"vary must list 'train' (the seed always sets train.seed) and each source once, got {self.vary}")
        folding = [key for key in self.factors if key in FOLD_KEYS] + [
            f"{name}: {key}" for name, overrides in self.variants.items() for key in dotted(overrides) if key in FOLD_KEYS
        ]
        if self.resampling.kind == "kfold" and folding:
            raise ValueError(f"resampling kfold makes each run's test split, so {folding[0]} cannot vary; drop it")
        if self.resampling.kind == "kfold" and "split" not in self.vary:
            # Nadeau and Bengio's correction is for repeats on independent partitions.
            raise ValueError("resampling kfold repeats the cross-validation on a new partition per seed: add 'split' to vary")
        return self

    @model_validator(mode="after")
    def _room_for_more_seeds(self) -> "AblationConfig":
        if self.until_decided is None:
            return self
        folds = self.resampling.folds if self.resampling.kind == "kfold" else 1
        if len(self.seeds) * folds < MIN_FIRST_LOOK:
            # A first look of 2 estimates (1 degree of freedom) is too heavy-tailed for the repeated
            # p-values' normal boundary: 5.7% false decisions measured where 5% is promised.
            raise ValueError(f"until_decided needs at least {MIN_FIRST_LOOK} seeds listed for its first look, got {self.seeds}")
        if self.until_decided.max_seeds <= len(self.seeds):
            raise ValueError(
                f"until_decided.max_seeds={self.until_decided.max_seeds} leaves no seed to add to the {len(self.seeds)} listed in seeds; "
                "raise max_seeds, or drop until_decided"
            )
        if len(self.looks()) > MOST_LOOKS:
            raise ValueError(f"until_decided plans {len(self.looks())} looks, at most {MOST_LOOKS}: raise until_decided.step")
        return self

    def looks(self) -> tuple[int, ...]:
        """The seed counts at which the ablation looks at its results: the listed seeds' alone, or
        with `until_decided` every planned look."""
        if self.until_decided is None:
            return (len(self.seeds),)
        step = self.until_decided.step or len(self.seeds)
        return tuple(sorted({*range(len(self.seeds), self.until_decided.max_seeds, step), self.until_decided.max_seeds}))

    def all_seeds(self) -> list[int]:
        """The listed seeds, then (with `until_decided`) the next unused integers up to `max_seeds`."""
        seeds, most = list(self.seeds), self.looks()[-1]
        candidate = 0
        while len(seeds) < most:
            if candidate not in seeds:
                seeds.append(candidate)
            candidate += 1
        return seeds

    def fold_overrides(self) -> list[list[str]]:
        """Per training of one (variant, seed): the overrides that pick its test split (one empty
        list for a holdout; with k-fold, one per fold)."""
        if self.resampling.kind == "holdout":
            return [[]]
        return [[f"data.folds={self.resampling.folds}", f"data.fold={fold}"] for fold in range(self.resampling.folds)]

    def seed_keys(self) -> dict[str, str]:
        """The settings the seed list sets, by the source of variation (`vary`) that sets each."""
        return {source: SEED_KEYS[source] for source in self.vary}

    def seed_overrides(self, seed: int) -> list[str]:
        """The settings one seed of the ablation sets."""
        return [f"{key}={seed}" for key in self.seed_keys().values()]


SEED_KEYS = {"train": "train.seed", "split": "data.seed", "augment": "augment.seed"}


# Regular two-level fractions of resolution IV or better (Montgomery, Design and Analysis of
# Experiments, table of 2^(k-p) designs): each added factor is the product of these base factors.
GENERATORS: dict[int, list[tuple[int, ...]]] = {
    4: [(0, 1, 2)],  # 2^(4-1), IV: D = ABC
    5: [(0, 1, 2, 3)],  # 2^(5-1), V: E = ABCD
    6: [(0, 1, 2), (1, 2, 3)],  # 2^(6-2), IV: E = ABC, F = BCD
    7: [(0, 1, 2), (1, 2, 3), (0, 2, 3)],  # 2^(7-3), IV: E = ABC, F = BCD, G = ACD
    8: [(1, 2, 3), (0, 2, 3), (0, 1, 2), (0, 1, 3)],  # 2^(8-4), IV: E = BCD, F = ACD, G = ABC, H = ABD
}


def parse_ablation(section: dict[str, Any] | None, source: str = "the configuration") -> AblationConfig:
    """A configuration's `ablation:` section as a design; a `ConfigError` names the key at fault,
    or says that `source` has no such section."""
    if section is None:
        raise ConfigError(f"{source} has no 'ablation:' section (design, seeds, factors).")
    return validate_model(AblationConfig, section, "ablation.")


def fraction_signs(factors: int) -> list[tuple[int, ...]]:
    """The runs of the fraction for `factors` factors, as -1 (first value) / +1 (second value) per
    factor. Each generator's sign is chosen so the fraction holds the all-first-values run: the
    baseline every effect is read against."""
    generators = GENERATORS[factors]
    base = factors - len(generators)
    runs = []
    for signs in itertools.product((-1, 1), repeat=base):
        runs.append(signs + tuple(-((-1) ** len(word)) * int(np.prod([signs[i] for i in word])) for word in generators))
    return runs


def defining_words(factors: int) -> list[frozenset[int]]:
    """The defining relation's words (every product of generator words), as sets of factor indices."""
    base = factors - len(GENERATORS[factors])
    words = [frozenset(word) | {base + index} for index, word in enumerate(GENERATORS[factors])]
    relation: set[frozenset[int]] = set()
    for count in range(1, len(words) + 1):
        for combination in itertools.combinations(words, count):
            product: frozenset[int] = frozenset()
            for word in combination:
                product = product ^ word
            relation.add(product)
    return sorted(relation, key=lambda word: (len(word), sorted(word)))


def two_factor_aliases(factors: int, pair: tuple[int, int]) -> list[tuple[int, int]]:
    """The other two-factor interactions a fraction cannot tell `pair` apart from."""
    aliases = []
    for word in defining_words(factors):
        other = word ^ frozenset(pair)
        if len(other) == 2:
            aliases.append(tuple(sorted(other)))
    return aliases


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
    if ablation.design == "fractional":
        runs = sorted(fraction_signs(len(factors)), key=lambda signs: (sum(sign > 0 for sign in signs), [-sign for sign in signs]))
        return [_variant({key: f.values[sign > 0] for (key, f), sign in zip(factors.items(), signs)}, baseline) for signs in runs]
    variants = [_variant(baseline, baseline)]
    for key, factor in factors.items():
        for value in factor.values[1:]:
            variants.append(_variant({**baseline, key: value}, baseline))
    for sides in (("data",), ("model",), ("data", "model")):
        corner = {key: (f.values[-1] if f.side in sides else f.values[0]) for key, f in factors.items()}
        if sum(corner[key] != baseline[key] for key in factors) > 1:
            variants.append(_variant(corner, baseline))
    everything = {key: factor.values[-1] for key, factor in factors.items()}
    if ablation.remove_one and len(factors) > 2:  # with two factors, removing one leaves the other alone: already there
        for key, factor in factors.items():
            variants.append(_variant({**everything, key: factor.values[0]}, baseline))
    unique = {variant.name: variant for variant in variants}
    return list(unique.values())
