"""Summaries over seeds and test samples, paired effects, and Holm-adjusted p-values.

A test score is a mean over test samples, so it varies with the seed (initialization, batch
order, dropout masks, and the split and augmentation draws when the ablation varies them
too) and with which test samples were drawn. When every seed scores the same test samples,
seeds and samples are crossed random effects, `x[s, i] = mu + a_s + b_i + e_si`, and the
variance of the grand mean is `(MS_seed + MS_sample - MS_residual) / (n N)` from the two-way
mean squares, with Satterthwaite's degrees of freedom (the "language-as-fixed-effect" fix,
Clark 1973; Bouthillier et al. 2021 make the same case for ML benchmarks). A seed-only
t-interval would miss the test samples entirely there: every seed shares them. When each seed
draws its own split, its mean already carries its own samples' noise, and the t-interval over
seeds covers both. Intervals are cut to the range the quantity can take.

Floors: a negative variance estimate of the crossed model is floored at the residual's share,
and its Satterthwaite degrees of freedom at n - 1 (the seeds' own); where each seed draws its
own test samples, the variance of a seed's mean is floored at its samples' own (the mean
within-seed variance over N), with n - 1 degrees of freedom. Where nothing varies at all
(every score the same), no t-interval exists: a proportion gets the exact Clopper-Pearson
interval over the distinct test samples pooled (36 of 36 right: [0.903, 1]), and a paired
difference that is zero on every sample gets the exact bound on how often the two arms could
disagree unseen (zero of N discordant pairs), never [0, 0].

Cross-validation (`Folds`): every sample is tested once per seed, by the model of its fold, and
the folds' models share most of their training data, so their scores are correlated and no
unbiased estimator of the variance exists. The per-fold means `d_rj` (seed r, fold j; J = R K of
them) get Nadeau and Bengio's corrected variance (2003), as Bouckaert and Frank's corrected
repeated k-fold test (2004) uses it: `Var(mean) = (1/J + n_test/n_train) s^2`, with `s^2` the
variance of the `d_rj` and J - 1 degrees of freedom. More seeds shrink only the first term: the
second is the price of one dataset.

Decisions: an effect is decided when its Holm-adjusted p-value (over every test of the report,
each distinct test counted once) is below 5%. Beside each per-comparison interval, the adjusted
interval (level 1 - 0.05 p / p_Holm) excludes zero exactly when Holm decides; the simultaneous
interval (Bonferroni, level 1 - 0.05 / m) covers all m effects at once with 95% confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

# SciPy is imported inside the functions that use it, so the command line starts without it.
if TYPE_CHECKING:
    from pipeline.ablation.sequential import Looks

CONFIDENCE, POWER = 0.95, 0.80
ALPHA = 1 - CONFIDENCE
MOST_SEEDS = 10_000  # how far `seeds_to_decide` looks
ACCURACY_RANGE, LOSS_RANGE, DIFFERENCE_RANGE = (0.0, 1.0), (0.0, math.inf), (-1.0, 1.0)
Bounds = tuple[float, float]


def missing(value: float | None) -> bool:
    """Whether a number is absent: None (as JSON has it) or NaN."""
    return value is None or math.isnan(value)


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None, so it is valid JSON (`null`)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


@dataclass(frozen=True)
class Summary:
    """Mean over seeds, the standard deviation of the per-seed values, and the 95% interval of the
    mean with its standard error and degrees of freedom (every source of variation counted).
    Under k-fold (`Folds`) `n` and `std` are of the seeds' fold estimates."""

    n: int
    mean: float
    std: float
    low: float
    high: float
    se: float = math.nan
    df: float = math.nan
    # One score's variance between seeds, between test samples (when every seed scores the same
    # ones) and the rest: the mean's variance is seed/n + sample/N + residual/(n N).
    seed_var: float = math.nan
    sample_var: float = 0.0
    residual_var: float = 0.0
    samples: int = 1  # N: test samples per seed
    # Nothing varied: no t-interval exists. "binomial": exact over `exact_trials` distinct test
    # samples; "sign-flip": the values the exact sign-flip test over the seeds cannot reject.
    exact: str = ""
    exact_trials: int = 0


@dataclass(frozen=True)
class Folds:
    """Repeated k-fold cross-validation: each seed's per-sample scores are `k` equal test folds in
    order, each scored by a model that trained on `train_samples` samples."""

    k: int
    test_samples: int  # per fold
    train_samples: int

    @property
    def correction(self) -> float:
        """Nadeau and Bengio's n_test / n_train: the share of a fold estimate's variance that the
        folds' shared training data keeps however many folds are averaged."""
        return self.test_samples / self.train_samples


def _check_folds(vectors: list[np.ndarray], folds: Folds) -> None:
    """Every seed's scores are its k folds: anything else (runs on other samples) has no corrected variance to fall back on."""
    expected = folds.k * folds.test_samples
    if any(vector.size != expected for vector in vectors):
        raise ValueError(
            f"k-fold scores of {sorted({vector.size for vector in vectors})} samples where {folds.k} folds of {folds.test_samples} were expected: "
            "a variant tested other samples (a data setting that changes which samples there are cannot vary under k-fold)"
        )


def _cross_validated(vectors: list[np.ndarray], folds: Folds, bounds: Bounds) -> Summary:
    """Summary of seeds' k-fold score vectors with Nadeau and Bengio's corrected variance."""
    per_fold = np.stack([vector.reshape(folds.k, -1).mean(axis=1) for vector in vectors])  # (seeds, folds)
    values = per_fold.ravel()
    mean, spread = float(values.mean()), float(values.var(ddof=1))
    # n counts the fold estimates (the t-test's units); as components, seed/seeds + sample/1 is
    # (1/(seeds k) + n_test/n_train) s^2, so `seeds_to_decide` counts seeds as seeds of k folds.
    summary = Summary(
        values.size, mean, float(values.std(ddof=1)), *bounds, math.sqrt((1 / values.size + folds.correction) * spread),
        float(values.size - 1), seed_var=spread / folds.k, sample_var=folds.correction * spread, samples=1,
    )
    if np.allclose(values, values[0], rtol=0.0, atol=1e-12):  # equal up to float summation: nothing varied
        summary = replace(summary, se=0.0, std=0.0, seed_var=0.0, sample_var=0.0)
        exact = "binomial" if _nothing_varied(vectors, bounds) else "sign-flip"
        # A seed's folds share their training data: the sign-flip test counts seeds, not folds.
        summary = replace(summary, n=summary.n if exact == "binomial" else len(vectors), exact=exact,
                          exact_trials=vectors[0].size if exact == "binomial" else 0)
    low, high = interval(summary, ALPHA, bounds)
    return replace(summary, low=low, high=high)


def _crossed(x: np.ndarray) -> tuple[float, float, tuple[float, float, float]]:
    """Variance of the grand mean of an `(n seeds, N samples)` table of crossed random effects,
    its degrees of freedom, and the variance components (seed, sample, residual)."""
    n, size = x.shape
    grand, seed_means, sample_means = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_seed = size * float(((seed_means - grand) ** 2).sum()) / (n - 1)
    ms_sample = n * float(((sample_means - grand) ** 2).sum()) / (size - 1)
    residual = x - seed_means[:, None] - sample_means[None, :] + grand
    ms_residual = float((residual**2).sum()) / ((n - 1) * (size - 1))
    combined = ms_seed + ms_sample - ms_residual
    variance = max(combined, ms_residual) / (n * size)  # a negative estimate is noise: floor at the residual's share
    denominator = ms_seed**2 / (n - 1) + ms_sample**2 / (size - 1) + ms_residual**2 / ((n - 1) * (size - 1))
    df = combined**2 / denominator if combined > 0 and denominator > 0 else n - 1
    components = (max(0.0, (ms_seed - ms_residual) / size), max(0.0, (ms_sample - ms_residual) / n), ms_residual)
    return variance, max(float(n - 1), df), components


def _binomial(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion at level 1 - alpha."""
    from scipy import stats

    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def _exact(mean: float, trials: int, bounds: Bounds, alpha: float) -> tuple[float, float]:
    """Where nothing varied: a proportion's exact interval, or a zero difference's exact bound on
    the share of samples on which the two arms could disagree (none of `trials` did)."""
    if bounds[0] == 0:
        return _binomial(round(mean * trials), trials, alpha)
    reach = _binomial(0, trials, alpha)[1]
    return -reach, reach


def _nothing_varied(vectors: list[np.ndarray], bounds: Bounds) -> bool:
    """Every score is the same 0 or 1 (a proportion), or every difference is 0."""
    values = np.concatenate(vectors)
    if bounds == (0.0, 1.0):
        return bool(np.all(values == values[0]) and values[0] in (0.0, 1.0))
    return bounds[0] == -bounds[1] and bool(np.all(values == 0))


def summarize_runs(scores: Sequence[np.ndarray], shared_samples: bool | Folds, bounds: Bounds = (-math.inf, math.inf)) -> Summary:
    """Summary of per-seed score vectors (one value per test sample, or a single number per seed).

    `shared_samples`: every seed scored the same test samples, in the same order (crossed);
    `Folds`: each seed's vector is its k folds in order (k-fold cross-validation, Nadeau and
    Bengio's corrected variance); otherwise each seed's mean is one independent draw (a
    t-interval over seeds).
    """
    vectors = [np.asarray(vector, dtype=float).ravel() for vector in scores]
    if isinstance(shared_samples, Folds):
        _check_folds(vectors, shared_samples)
        return _cross_validated(vectors, shared_samples, bounds)
    shared_samples = shared_samples is True
    seed_means = np.array([float(np.mean(vector)) for vector in scores])
    n = seed_means.size
    mean = float(seed_means.mean()) if n else math.nan
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(seed_means.std(ddof=1))
    sizes = {vector.size for vector in vectors}
    samples = sizes.pop() if len(sizes) == 1 else 1
    crossed = shared_samples and samples > 1
    if crossed:
        variance, df, (seed_var, sample_var, residual_var) = _crossed(np.stack(vectors))
    else:  # each seed's mean varies at least by its own samples' noise: floor at the within-seed variance
        within = float(np.mean([vector.var(ddof=1) for vector in vectors])) / samples if samples > 1 else 0.0
        per_seed = max(std**2, within)
        variance, df, (seed_var, sample_var, residual_var) = per_seed / n, float(n - 1), (per_seed, 0.0, 0.0)
    summary = Summary(n, mean, std, *bounds, math.sqrt(variance), df, seed_var, sample_var, residual_var, samples if crossed else 1)
    if variance == 0 and samples > 1 and _nothing_varied(vectors, bounds):
        summary = replace(summary, exact="binomial", exact_trials=samples if crossed else samples * n)
    elif variance == 0:
        summary = replace(summary, exact="sign-flip")
    low, high = interval(summary, ALPHA, bounds)
    return replace(summary, low=low, high=high)


def interval(summary: Summary, alpha: float, bounds: Bounds = (-math.inf, math.inf)) -> tuple[float, float]:
    """The summary's two-sided interval at level 1 - alpha, cut to `bounds`: a t-interval with
    its standard error and degrees of freedom, or exact where nothing varied."""
    from scipy import special

    if summary.exact == "binomial":
        return _exact(summary.mean, summary.exact_trials, bounds, alpha)
    if summary.exact == "sign-flip":  # every seed gave the same value: no other value is rejected below this many seeds
        return (summary.mean, summary.mean) if sign_flip_p(summary.n) < alpha else bounds
    if missing(summary.se):
        return math.nan, math.nan
    half = float(special.stdtrit(summary.df, 1 - alpha / 2)) * summary.se
    return max(bounds[0], summary.mean - half), min(bounds[1], summary.mean + half)


def summarize(values: Sequence[float], bounds: Bounds = (-math.inf, math.inf)) -> Summary:
    """The summary of one number per seed: the t-interval over seeds, cut to `bounds`, the range
    the quantity can take (an accuracy's [0, 1], a difference of accuracies' [-1, 1], a loss's [0, inf))."""
    return summarize_runs([np.array([value]) for value in values], shared_samples=False, bounds=bounds)


def p_value(summary: Summary) -> float:
    """Two-sided t-test of the mean against zero. Where nothing varies at all the t statistic is
    undefined; the exact sign-flip test takes over: n equal, non-zero per-seed values are as
    extreme as any of the 2^n sign patterns gets, so p = 2 / 2^n (0.25 for three seeds), never 0."""
    from scipy import special

    if summary.n < 2:
        return math.nan
    if summary.se == 0:
        return 1.0 if summary.mean == 0 else sign_flip_p(summary.n)
    return float(2 * special.stdtr(summary.df, -abs(summary.mean) / summary.se))


def sign_flip_p(seeds: int) -> float:
    """The exact sign-flip p-value of `seeds` equal, non-zero values: 2 of the 2^n sign patterns
    are as extreme."""
    return min(1.0, 2.0 / 2.0**seeds)


def detectable_at(se: float, df: float, alpha: float) -> float:
    """The effect a two-sided t-test at level `alpha` finds with 80% power: the noncentrality
    where P(|T| > t crit) = 0.8 for T noncentral t with `df` degrees of freedom, times `se`."""
    from scipy import optimize, special  # not scipy.stats, which a cached ablation would import for this alone

    critical = float(special.stdtrit(df, 1 - alpha / 2))

    def shortfall(shift: float) -> float:
        upper, lower = 1.0 - float(special.nctdtr(df, shift, critical)), float(special.nctdtr(df, shift, -critical))
        if math.isnan(upper):  # scipy's noncentral t gives out far in its tails: the normal is exact enough there
            upper = float(special.ndtr(shift - critical))  # the normal's survival function at critical - shift
        return upper + (0.0 if math.isnan(lower) else lower) - POWER

    shortcut = critical + float(special.stdtrit(df, POWER))  # (t crit + t power) se: a little short, by 1-2% at df 4
    return float(optimize.brentq(shortfall, 0.0, 2 * shortcut)) * se


def detectable(summary: Summary, alpha: float = ALPHA) -> float:
    """The smallest true effect this many seeds and test samples find with 80% power at level
    `alpha`; where nothing varied, the exact bound (an effect that large would have shown)."""
    if summary.exact == "binomial":
        low, high = _exact(summary.mean, summary.exact_trials, DIFFERENCE_RANGE, alpha)
        return high
    if missing(summary.se) or summary.se == 0:
        return math.nan
    return detectable_at(summary.se, summary.df, alpha)


def seeds_to_decide(summary: Summary, size: float, alpha: float) -> int | None:
    """The fewest seeds that would find an effect of `size` with 80% power at level `alpha`,
    with the variance components measured here (degrees of freedom n - 1, conservatively); None
    when no number of seeds would (the shared test samples' own variance is too large), or there
    is no effect or no variance to go by."""
    from scipy import special

    if size == 0 or missing(summary.seed_var) or summary.exact == "binomial":
        return None
    if summary.exact == "sign-flip":
        return next(seeds for seeds in range(2, MOST_SEEDS) if sign_flip_p(seeds) < alpha)
    samples = summary.samples

    def se(seeds: int) -> float:
        return math.sqrt(summary.seed_var / seeds + summary.sample_var / samples + summary.residual_var / (seeds * samples))

    def shortcut(seeds: int) -> float:  # (t crit + t power) se: cheap, and a little short of the noncentral t's answer
        return (float(special.stdtrit(seeds - 1, 1 - alpha / 2)) + float(special.stdtrit(seeds - 1, POWER))) * se(seeds)

    if shortcut(MOST_SEEDS) > abs(size):
        return None
    fewest, most = 2, MOST_SEEDS
    while fewest < most:
        middle = (fewest + most) // 2
        fewest, most = (fewest, middle) if shortcut(middle) <= abs(size) else (middle + 1, most)
    while fewest < MOST_SEEDS and se(fewest) > 0 and detectable_at(se(fewest), fewest - 1, alpha) > abs(size):
        fewest += 1  # the noncentral t asks a seed or two more where the shortcut falls short
    return fewest


@dataclass(frozen=True)
class Effect:
    """A paired difference (treatment minus reference, matched by seed and test sample), its
    uncertainty, and its decision within the report's family of tests (see `adjusted`)."""

    name: str
    side: str
    summary: Summary
    p_value: float
    p_holm: float = math.nan
    detectable: float = math.nan  # the smallest effect these seeds and test samples find with 80% power
    condition: str = ""  # what the effect is conditional on ("all else at baseline"); the name ends with it
    bounds: Bounds = DIFFERENCE_RANGE  # the range the difference can take
    tests: int = 1  # distinct tests in the family its p-value was adjusted in
    decided: bool = False  # Holm-adjusted p-value below 5%: the one rule sentences, tables and colours follow
    adjusted_low: float = math.nan  # excludes zero exactly when `decided`
    adjusted_high: float = math.nan
    simultaneous_low: float = math.nan  # Bonferroni over the family: all of them cover at once, 95%
    simultaneous_high: float = math.nan
    seeds_to_decide: int | None = None  # undecided: seeds that would find an effect of this size, adjusted
    test_id: str = ""  # the contrast over cells it tests: two effects with one id are one test
    # Seeds until decided: `p_value` and every interval are repeated ones over these planned looks
    # (`pipeline.ablation.sequential`); `nominal_p` is this look's p-value read alone.
    looks: Looks | None = None
    nominal_p: float = math.nan

    def _interval(self, level: float) -> tuple[float, float]:
        """The interval at overall level 1 - `level`: over every planned look when there are looks."""
        nominal = level if self.looks is None else self.looks.nominal(level, self.summary)
        return interval(self.summary, nominal, self.bounds)

    def sequential(self, looks: Looks) -> Effect:
        """This effect read at one of several planned looks: its repeated p-value and 95% interval."""
        nominal = self.p_value if self.looks is None else self.nominal_p  # read once, however often it is called
        repeated = replace(self, looks=looks, nominal_p=nominal, p_value=looks.overall_p(nominal, self.summary))
        low, high = repeated._interval(ALPHA)
        return replace(repeated, summary=replace(self.summary, low=low, high=high))

    def adjusted(self, p_holm: float, tests: int) -> Effect:
        """This effect decided within a family of `tests` distinct tests, given its Holm p-value."""
        level = ALPHA * self.p_value / p_holm if p_holm > 0 and self.p_value > 0 else ALPHA / tests
        decided = not missing(p_holm) and p_holm < ALPHA
        adjusted_low, adjusted_high = self._interval(level)
        simultaneous_low, simultaneous_high = self._interval(ALPHA / tests)
        needed = None if decided else seeds_to_decide(self.summary, self.summary.mean, ALPHA / tests)
        return replace(
            self, p_holm=p_holm, tests=tests, decided=decided, adjusted_low=adjusted_low, adjusted_high=adjusted_high,
            simultaneous_low=simultaneous_low, simultaneous_high=simultaneous_high, seeds_to_decide=needed,
        )

    def sentence(self, metric: str = "test accuracy", scale: float = 100.0, unit: str = "points", digits: int = 1) -> str:
        """The effect in plain words, by the one rule: "adding X raised test accuracy by 1.2 points
        [0.4, 2.0]" when decided (the adjusted interval), else its size and interval, that it is
        indistinguishable from noise, and what would decide it."""
        s = self.summary
        units = f" {unit}" if unit else ""
        if missing(s.low):
            return f"{self.name} moved {metric} by {s.mean * scale:+.{digits}f}{units} (one seed: no interval, nothing decided)"
        low, high = (self.adjusted_low, self.adjusted_high) if not missing(self.adjusted_low) else (s.low, s.high)
        interval_text = f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
        if self.decided:
            verb = "raised" if s.mean > 0 else "lowered"
            return f"{self.name} {verb} {metric} by {abs(s.mean) * scale:.{digits}f}{units}{interval_text}"
        family = f" after adjusting for {self.tests} tests" if self.tests > 1 else ""
        text = f"{self.name} moved {metric} by {s.mean * scale:+.{digits}f}{units}{interval_text}: indistinguishable from noise{family}"
        if s.mean and self.seeds_to_decide is not None:
            return f"{text}; about {self.seeds_to_decide} seeds would decide an effect of this size"
        if s.mean and not s.exact:
            if s.samples > 1:  # the test samples every seed shares set the floor: more of them would lower it
                return f"{text}; more seeds cannot decide an effect of this size on these {s.samples} test samples (k-fold resampling tests every sample)"
            return f"{text}; more seeds cannot decide an effect of this size: what they do not average away (the test samples, or under k-fold the dataset) is too large"
        return text


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided one-sample t-test of per-seed differences against zero (see `p_value`)."""
    return p_value(summarize(differences))


def _of_means(pairs: list[tuple[np.ndarray, np.ndarray]], fixed_test_sets: bool, bounds: Bounds) -> Summary:
    """The difference of per-seed means where the arms scored different test samples. Each arm's
    mean carries its test samples' own noise (its per-sample variance over N): with test sets
    fixed across seeds that noise is common to every seed and adds to the grand mean's variance
    whole; where each seed draws its own, it floors each seed's difference's variance."""
    summary = summarize([float(ours.mean() - theirs.mean()) for ours, theirs in pairs], bounds)
    noise = float(np.mean([sum(arm.var(ddof=1) / arm.size for arm in pair if arm.size > 1) for pair in pairs]))
    if summary.n < 2 or noise == 0:
        return summary
    seed_var = summary.std**2 if fixed_test_sets else max(summary.std**2, noise)
    sample_var = noise if fixed_test_sets else 0.0
    variance = seed_var / summary.n + sample_var
    widened = replace(summary, se=math.sqrt(variance), seed_var=seed_var, sample_var=sample_var, residual_var=0.0, exact="")
    low, high = interval(widened, ALPHA, bounds)
    return replace(widened, low=low, high=high)


def paired_effect(
    name: str,
    side: str,
    treatment: dict[int, np.ndarray],
    reference: dict[int, np.ndarray],
    shared_samples: bool | Folds = False,
    bounds: Bounds = DIFFERENCE_RANGE,
    condition: str = "",
) -> Effect | None:
    """Effect from per-seed score vectors (per test sample, or one number each); only seeds present
    in both count, and each seed's difference is taken sample by sample. None when no seed pairs up.
    A `condition` is appended to the name in parentheses and kept on its own."""
    seeds = sorted(set(treatment) & set(reference))
    if not seeds:
        return None
    pairs = [(np.asarray(treatment[s], dtype=float), np.asarray(reference[s], dtype=float)) for s in seeds]
    if any(ours.shape != theirs.shape for ours, theirs in pairs):  # different test samples (a data factor moved the split)
        if isinstance(shared_samples, Folds):
            _check_folds([ours for ours, _ in pairs] + [theirs for _, theirs in pairs], shared_samples)
        summary = _of_means(pairs, shared_samples is True, bounds)
    else:
        summary = summarize_runs([ours - theirs for ours, theirs in pairs], shared_samples, bounds)
    named = f"{name} ({condition})" if condition else name
    effect = Effect(named, side, summary, p_value(summary), detectable=detectable(summary), condition=condition, bounds=bounds)
    return effect.adjusted(effect.p_value, 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    indexed.sort()
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
