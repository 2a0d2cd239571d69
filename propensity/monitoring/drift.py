"""Drift: live model inputs against the training reference (`propensity.monitoring.reference`).

Per feature, two statistics for numeric features and one for categorical ones:
- PSI over the reference's quantile bins plus a missing bin, with half a count added to every bin of both sides so an
  empty bin adds a finite term: sum (q - p) ln(q / p).
- Normalised Wasserstein: W1 between the live and reference distributions of the non-missing values, divided by the
  reference's standard deviation. W1 = integral |F_ref - F_live| dx, with both CDFs evaluated on the reference's
  grid of 201 quantiles (exact for integer counts, whose grid is their values; within 0.5 % of the reference mass
  per cell otherwise). Live values outside the reference's range add their exact distance beyond it.
- Jensen-Shannon divergence (base 2; its square root, the JS distance, is reported too) over the reference's
  categories, an "unseen category" cell and a missing cell, for the categorical features.

Why the thresholds are calibrated, not fixed
A fixed PSI > 0.2 or JS > 0.1 cut-off is a statement about effect size, but the statistic of a window of n rows
from an unchanged population is pure sampling noise of order (bins - 1) (1/N_ref + 1/n): the same cut-off alarms
too often on small windows and, used with a test, every feature alarms on large ones ("almost all features became
drifted" on full data: Evidently issue #50; NannyML issue #426). Here every threshold is the null distribution's
quantile for the live window's size, estimated by resampling the reference itself:
- Two-sample null: each draw takes a reference-sized and a window-sized multinomial sample from the reference's
  cell probabilities (grid cells plus missing, or categories plus missing) and computes every statistic between
  them, so both the reference's own sampling noise and the window's are in it.
- Jointly over all features: a moment-matched gamma is fitted to each statistic's null draws (only to put the
  statistics on one p-value scale; its fit need not be good), and the alarm threshold is the false-alarm-rate
  quantile of the smallest p-value across all statistics of all features in each draw (Westfall and Young's min-p).
  The family-wise rate is therefore the target at every window size, whatever the correlation between the
  statistics (PSI and W1 of one feature move together). A feature's `p_value` is that family-wise adjusted p.
- Cost does not grow with the window: a live column is counted once (searchsorted + bincount over the grid), and
  multinomial draws cost the same for 1k or 1M rows. Reference-sized draws are cached per reference, window-sized
  ones per window size.
Assumption: rows are independent draws. Decision points of one session are correlated, so a window made of few
long sessions is noisier than its row count says; windows of many sessions (hours of traffic) are what it is for.

The multivariate check (`classifier_drift`) asks whether a classifier can tell reference rows from live rows, which
catches changes in the joint distribution that every marginal hides.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammaincc, gammainccinv
from scipy.stats import norm, rankdata

from propensity.features.definitions import MODEL_FEATURE_NAMES
from propensity.monitoring.reference import feature_matrix, fingerprint

NULL_DRAWS = 2000  # the 1 % quantile of the min-p rests on the 20 smallest of 2000 draws
PSI_SMOOTHING = 0.5  # counts added to every bin of both sides before PSI
CLASSIFIER_MAX_ROWS = 5000  # per side
CLASSIFIER_MIN_ROWS = 20
CLASSIFIER_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
CLASSIFIER_ROUNDS = 50


# --------------------------------------------------------------------------------------------- the reference, compiled


@dataclass(frozen=True)
class _Numeric:
    name: str
    grid: np.ndarray  # m reference quantiles; cells 0..m-1 are (grid[i-1], grid[i]], cell m is above the maximum
    width: np.ndarray  # grid[i+1] - grid[i], m-1 values
    edges: np.ndarray  # PSI bin edges (a subset of the grid)
    cells: np.ndarray  # reference counts of the m+2 cells: grid cells, above the maximum (0), missing
    to_bin: np.ndarray  # (m+2, bins) 0/1: the PSI bin of each cell (missing is the last bin)
    std: float


@dataclass(frozen=True)
class _Categorical:
    name: str
    categories: np.ndarray  # sorted
    cells: np.ndarray  # reference counts: categories, unseen (0), missing


@dataclass(frozen=True)
class _Compiled:
    key: str
    rows: int
    numeric: tuple[_Numeric, ...]
    categorical: tuple[_Categorical, ...]
    importance: dict[str, float]

    @property
    def tests(self) -> list[tuple[str, str]]:
        """(feature, statistic) in the order of the null-draw columns."""
        out = [(f.name, s) for f in self.numeric for s in ("psi", "wasserstein")]
        return out + [(f.name, "js_divergence") for f in self.categorical]


def _compile(reference: dict) -> _Compiled:
    try:
        profiles = reference["profiles"]
        names = reference["features"]
    except (KeyError, TypeError):
        raise ValueError("not a reference profile: expected a dict with 'features' and 'profiles'") from None
    numeric, categorical = [], []
    for name in names:
        profile = profiles[name]
        if profile["kind"] == "categorical":
            categories = np.asarray(profile["categories"], dtype="float64")
            cells = np.array([*profile["counts"], 0, profile["missing"]], dtype=np.int64)
            categorical.append(_Categorical(name, categories, cells))
            continue
        grid = np.asarray(profile["grid"], dtype="float64")
        edges = np.asarray(profile["edges"], dtype="float64")
        cells = np.array([*profile["grid_counts"], 0, profile["missing"]], dtype=np.int64)
        bins = len(edges) + 2  # value bins ("<= edge", then above the last edge), then missing
        to_bin = np.zeros((len(grid) + 2, bins))
        value_bin = np.searchsorted(edges, grid, side="left")  # the grid cell ending at grid[i] lies in this bin
        to_bin[np.arange(len(grid)), value_bin] = 1.0
        to_bin[len(grid), len(edges)] = 1.0  # above the maximum: the top value bin
        to_bin[len(grid) + 1, bins - 1] = 1.0
        std = profile["std"] or 0.0
        numeric.append(_Numeric(name, grid, np.diff(grid), edges, cells, to_bin, float(std)))
    key = reference.get("fingerprint") or fingerprint(reference)
    return _Compiled(key, int(reference["rows"]), tuple(numeric), tuple(categorical), dict(reference["importance"]))


# --------------------------------------------------------------------------------------------- statistics


def _psi(ref: np.ndarray, live: np.ndarray) -> np.ndarray:
    """PSI between rows of bin counts (broadcasting), half a count added to every bin of both sides."""
    bins = ref.shape[-1]
    p = (ref + PSI_SMOOTHING) / (ref.sum(axis=-1, keepdims=True) + PSI_SMOOTHING * bins)
    q = (live + PSI_SMOOTHING) / (live.sum(axis=-1, keepdims=True) + PSI_SMOOTHING * bins)
    return ((q - p) * np.log(q / p)).sum(axis=-1)


def _wasserstein(feature: _Numeric, ref: np.ndarray, live: np.ndarray, live_tails: float = 0.0) -> np.ndarray:
    """W1 / reference std between rows of cell counts; `live_tails` is the live values' summed distance outside
    the reference's [min, max] (the reference has none)."""
    m = len(feature.grid)
    if m == 0:
        return np.zeros(np.broadcast_shapes(ref.shape, live.shape)[:-1])
    n_ref = ref[..., : m + 1].sum(axis=-1)
    n_live = live[..., : m + 1].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf_ref = np.cumsum(ref[..., : m - 1], axis=-1) / n_ref[..., None]
        cdf_live = np.cumsum(live[..., : m - 1], axis=-1) / n_live[..., None]
        w1 = (np.abs(cdf_ref - cdf_live) * feature.width).sum(axis=-1) + live_tails / n_live
    w1 = np.where((n_ref > 0) & (n_live > 0), w1, 0.0)
    return w1 / feature.std if feature.std > 0 else w1


def _js_divergence(ref: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits between rows of counts (0 log 0 = 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ref / ref.sum(axis=-1, keepdims=True)
        q = live / live.sum(axis=-1, keepdims=True)
        m = (p + q) / 2
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    return np.nan_to_num(np.clip((kl_p + kl_q) / 2, 0.0, 1.0))


def _count_numeric(feature: _Numeric, values: np.ndarray) -> tuple[np.ndarray, float]:
    """Cell counts of a live column (NaN = missing) and its summed distance outside the reference's range."""
    m = len(feature.grid)
    missing = int(np.isnan(values).sum())
    if m == 0:  # the reference had no values: every live value is above its (empty) range
        return np.array([len(values) - missing, missing], dtype=np.int64), 0.0
    cells = np.bincount(np.searchsorted(feature.grid, values, side="left"), minlength=m + 1)
    cells[m] -= missing  # NaN sorts after every number: searchsorted put it in the above-maximum cell
    tails = float(np.fmax(feature.grid[0] - values, 0.0).sum() + np.fmax(values - feature.grid[-1], 0.0).sum())
    return np.append(cells, missing), tails


def _count_categorical(feature: _Categorical, values: np.ndarray) -> np.ndarray:
    k = len(feature.categories)
    missing = np.isnan(values)
    if k == 0:
        return np.array([len(values) - missing.sum(), missing.sum()], dtype=np.int64)
    position = np.minimum(np.searchsorted(feature.categories, values), k - 1)
    cell = np.where(feature.categories[position] == values, position, k)
    cell[missing] = k + 1
    return np.bincount(cell, minlength=k + 2)


def _statistics(compiled: _Compiled, ref_cells: list[np.ndarray], live_cells: list[np.ndarray], tails=None):
    """Every test's statistic (columns in `compiled.tests` order) for rows of reference and live cell counts."""
    columns = []
    for i, feature in enumerate(compiled.numeric):
        ref, live = ref_cells[i], live_cells[i]
        columns.append(_psi(ref @ feature.to_bin, live @ feature.to_bin))
        columns.append(_wasserstein(feature, ref, live, 0.0 if tails is None else tails[i]))
    for j, feature in enumerate(compiled.categorical):
        columns.append(_js_divergence(ref_cells[len(compiled.numeric) + j], live_cells[len(compiled.numeric) + j]))
    return np.stack(np.broadcast_arrays(*columns), axis=-1)


# --------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class _Calibration:
    shape: np.ndarray  # per test: the moment-matched gamma of its null draws (shape 0: a degenerate null)
    scale: np.ndarray
    null_max: np.ndarray  # per test: the largest null draw (used when the null is degenerate)
    min_p: np.ndarray  # sorted: per draw, the smallest p-value over all tests


def _gamma_fit(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, var = draws.mean(axis=0), draws.var(axis=0)
    ok = (mean > 0) & (var > 0)
    shape = np.where(ok, mean**2 / np.where(ok, var, 1.0), 0.0)
    scale = np.where(ok, var / np.where(mean > 0, mean, 1.0), 0.0)
    return shape, scale


def _p_values(shape: np.ndarray, scale: np.ndarray, null_max: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """Gamma upper-tail p-values; a test whose null draws were all equal gives 1 up to their value, 0 beyond."""
    ok = shape > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        fitted = gammaincc(np.where(ok, shape, 1.0), statistics / np.where(ok, scale, 1.0))
    degenerate = np.where(statistics <= null_max * (1 + 1e-9) + 1e-12, 1.0, 0.0)
    return np.where(ok, fitted, degenerate)


_LOCK = threading.Lock()
_REFERENCE_DRAWS: OrderedDict[tuple[str, int], list[np.ndarray]] = OrderedDict()
_CALIBRATIONS: OrderedDict[tuple[str, int, int], _Calibration] = OrderedDict()
_KEEP_REFERENCES, _KEEP_CALIBRATIONS = 4, 64


def _draw(compiled: _Compiled, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    cells = [f.cells for f in compiled.numeric] + [f.cells for f in compiled.categorical]
    return [rng.multinomial(size, c / c.sum(), size=NULL_DRAWS) for c in cells]


def _calibration(compiled: _Compiled, window_rows: int, seed: int) -> _Calibration:
    key = (compiled.key, window_rows, seed)
    with _LOCK:
        if key in _CALIBRATIONS:
            _CALIBRATIONS.move_to_end(key)
            return _CALIBRATIONS[key]
        reference_draws = _REFERENCE_DRAWS.get((compiled.key, seed))
    if reference_draws is None:
        reference_draws = _draw(compiled, compiled.rows, np.random.default_rng([seed, 0]))
    window_draws = _draw(compiled, window_rows, np.random.default_rng([seed, 1, window_rows]))
    null = _statistics(compiled, reference_draws, window_draws)
    shape, scale = _gamma_fit(null)
    null_max = null.max(axis=0)
    min_p = np.sort(_p_values(shape, scale, null_max, null).min(axis=1))
    calibration = _Calibration(shape, scale, null_max, min_p)
    with _LOCK:
        _REFERENCE_DRAWS[(compiled.key, seed)] = reference_draws
        _REFERENCE_DRAWS.move_to_end((compiled.key, seed))
        while len(_REFERENCE_DRAWS) > _KEEP_REFERENCES:
            _REFERENCE_DRAWS.popitem(last=False)
        _CALIBRATIONS[key] = calibration
        while len(_CALIBRATIONS) > _KEEP_CALIBRATIONS:
            _CALIBRATIONS.popitem(last=False)
    return calibration


# --------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "numeric" or "categorical"
    statistics: dict[str, float]  # psi and wasserstein (W1 / reference std), or js_divergence and js_distance
    thresholds: dict[str, float]  # the value of each tested statistic at which this window size alarms
    p_values: dict[str, float]  # family-wise adjusted, per tested statistic
    p_value: float  # the smallest of them
    drifted: bool
    importance: float  # share of LightGBM's gain
    drift: float  # PSI over the feature's bins (categories for a categorical one): one effect-size scale for all
    score: float  # importance x drift, the ranking
    reference_missing_rate: float
    live_missing_rate: float
    reference_bins: list[int] = field(default_factory=list)  # counts per PSI bin (categories), missing last
    live_bins: list[int] = field(default_factory=list)
    bin_labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DriftReport:
    drifted: bool
    window_rows: int
    reference_rows: int
    false_alarm_rate: float
    null_draws: int
    features: list[FeatureDrift]  # drifted first, then by score

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def as_dict(self) -> dict:
        return {**asdict(self), "drifted_features": self.drifted_features}


def _bin_labels(edges: np.ndarray) -> list[str]:
    def number(v: float) -> str:
        return f"{v:g}"

    if len(edges) == 0:
        return ["all", "missing"]
    labels = [f"<= {number(edges[0])}"]
    labels += [f"({number(a)}, {number(b)}]" for a, b in zip(edges[:-1], edges[1:])]
    return [*labels, f"> {number(edges[-1])}", "missing"]


def _check_rate(false_alarm_rate: float) -> int:
    """The number of null draws allowed below the threshold (the Monte Carlo test's k)."""
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    k = int(np.floor(false_alarm_rate * (NULL_DRAWS + 1)))
    if k < 1:
        raise ValueError(f"false_alarm_rate {false_alarm_rate} is below what {NULL_DRAWS} null draws can resolve")
    return k


# The smallest change that counts as drift, on top of being beyond sampling noise. Real traffic is never exactly the
# reference's population: weekly rhythms and slow trends are real but harmless, and with enough rows any of them is
# significant (the peers' "everything drifts on full data" failure, coming back through the sample size). So a
# numeric feature must also move by a tenth of a reference SD (normalised Wasserstein) or change its missing share by
# five points, and a categorical one must reach a PSI of 0.02 over its categories (the hour mix with 60 % more
# evening traffic is 0.05).
MIN_SHIFT_SD = 0.1
MIN_MISSING_CHANGE = 0.05
MIN_CATEGORY_PSI = 0.02
# The multivariate check's floor: a classifier that orders 60 % of (reference, live) pairs right, beyond its
# interval. On `make loop`'s store before the shift, days of unchanged shoppers gave 0.58 (cohorts age, weeks have a
# rhythm): real, significant at 640 sessions, and no reason to retrain.
MIN_CLASSIFIER_AUC = 0.6


def _large_enough(kind: str, statistics: dict, drift: float, missing_change: float) -> bool:
    if kind == "categorical":
        return drift >= MIN_CATEGORY_PSI
    return statistics["wasserstein"] >= MIN_SHIFT_SD or abs(missing_change) >= MIN_MISSING_CHANGE


def drift_report(
    reference: dict,
    live: pd.DataFrame,
    *,
    false_alarm_rate: float = 0.01,
    seed: int = 0,
) -> DriftReport:
    """Every feature of `live` (one row per decision, the model's feature columns) against the reference profile.

    A feature drifts when one of its statistics passes its threshold (with rows drawn from the reference's
    population that happens in `false_alarm_rate` of windows, at any window size: see the module docstring) and the
    change is large enough to matter (`_large_enough`). `drifted` is True when any feature drifts."""
    k = _check_rate(false_alarm_rate)
    compiled = _compile(reference)
    names = [f.name for f in compiled.numeric] + [f.name for f in compiled.categorical]
    columns = feature_matrix(live, names, what="live window")
    window_rows = len(live)
    if window_rows == 0:
        raise ValueError("live window is empty: a drift report needs rows")

    live_cells, tails = [], []
    for feature in compiled.numeric:
        cells, tail = _count_numeric(feature, columns[feature.name])
        live_cells.append(cells)
        tails.append(tail)
    for feature in compiled.categorical:
        live_cells.append(_count_categorical(feature, columns[feature.name]))
    ref_cells = [f.cells for f in compiled.numeric] + [f.cells for f in compiled.categorical]
    observed = _statistics(compiled, ref_cells, live_cells, tails)

    calibration = _calibration(compiled, window_rows, seed)
    raw_p = _p_values(calibration.shape, calibration.scale, calibration.null_max, observed)
    # Monte Carlo family-wise p: the share of null draws whose smallest p is at least as extreme.
    adjusted = (1 + np.searchsorted(calibration.min_p, raw_p, side="right")) / (NULL_DRAWS + 1)
    p_threshold = calibration.min_p[k - 1]  # a statistic whose p falls below this alarms
    with np.errstate(invalid="ignore"):
        thresholds = np.where(
            calibration.shape > 0,
            calibration.scale * gammainccinv(np.where(calibration.shape > 0, calibration.shape, 1.0), p_threshold),
            calibration.null_max,
        )
    by_test = {test: i for i, test in enumerate(compiled.tests)}

    rows = []
    for i, feature in enumerate([*compiled.numeric, *compiled.categorical]):
        ref, cells = ref_cells[i], live_cells[i]
        if isinstance(feature, _Numeric):
            kind, tested = "numeric", ("psi", "wasserstein")
            ref_bins, live_bins = (ref @ feature.to_bin).astype(int), (cells @ feature.to_bin).astype(int)
            labels = _bin_labels(feature.edges) if len(feature.grid) else ["present", "missing"]
            statistics = {s: float(observed[by_test[(feature.name, s)]]) for s in tested}
            drift = statistics["psi"]
        else:
            kind, tested = "categorical", ("js_divergence",)
            ref_bins, live_bins = ref, cells
            labels = [f"{c:g}" for c in feature.categories] + ["unseen", "missing"]
            js = float(observed[by_test[(feature.name, "js_divergence")]])
            statistics = {"js_divergence": js, "js_distance": float(np.sqrt(js))}
            drift = float(_psi(ref, cells))
        p_values = {s: float(adjusted[by_test[(feature.name, s)]]) for s in tested}
        importance = float(compiled.importance.get(feature.name, 0.0))
        reference_missing, live_missing = float(ref[-1] / max(ref.sum(), 1)), float(cells[-1] / window_rows)
        significant = any(raw_p[by_test[(feature.name, s)]] < p_threshold for s in tested)
        rows.append(
            FeatureDrift(
                feature=feature.name,
                kind=kind,
                statistics=statistics,
                thresholds={s: float(thresholds[by_test[(feature.name, s)]]) for s in tested},
                p_values=p_values,
                p_value=min(p_values.values()),
                drifted=significant and _large_enough(kind, statistics, drift, live_missing - reference_missing),
                importance=importance,
                drift=drift,
                score=importance * drift,
                reference_missing_rate=reference_missing,
                live_missing_rate=live_missing,
                reference_bins=[int(v) for v in ref_bins],
                live_bins=[int(v) for v in live_bins],
                bin_labels=labels,
            )
        )
    rows.sort(key=lambda r: (not r.drifted, -r.score, r.feature))
    return DriftReport(
        drifted=any(r.drifted for r in rows),
        window_rows=window_rows,
        reference_rows=compiled.rows,
        false_alarm_rate=false_alarm_rate,
        null_draws=NULL_DRAWS,
        features=rows,
    )


# --------------------------------------------------------------------------------------------- multivariate check


def _delong(scores: np.ndarray, is_live: np.ndarray) -> tuple[float, float]:
    """ROC-AUC of `scores` for live (1) against reference (0) and DeLong's variance (ties count one half)."""
    ranks = rankdata(scores)
    live, ref = ranks[is_live], ranks[~is_live]
    n_live, n_ref = len(live), len(ref)
    v10 = (live - rankdata(scores[is_live])) / n_ref  # per live row: share of reference rows scored below it
    v01 = 1.0 - (ref - rankdata(scores[~is_live])) / n_live
    auc = float(v10.mean())
    variance = float(v10.var(ddof=1) / n_live + v01.var(ddof=1) / n_ref)
    return auc, variance


def classifier_drift(
    reference_sample: pd.DataFrame,
    live: pd.DataFrame,
    *,
    seed: int = 0,
    alpha: float = 0.01,
    max_rows: int = CLASSIFIER_MAX_ROWS,
    features: tuple[str, ...] = MODEL_FEATURE_NAMES,
) -> dict:
    """Can a classifier tell live rows from reference rows? Catches joint changes no single feature shows.

    Up to `max_rows` rows a side, split at random (stratified) into halves: a small LightGBM (50 rounds, 15 leaves)
    is fitted on one half and scores the other, so the AUC is measured on rows its model never saw. That held-out AUC
    is the Mann-Whitney statistic of a fixed scoring function, and DeLong's variance is exact for it (no
    distributional assumption, unlike Hanley-McNeil's exponential model, and O(n log n), unlike a bootstrap that
    would refit the model per resample). Without drift the held-out rows are exchangeable between the two sides, so
    the AUC has mean 0.5 and `drifted` (the one-sided lower bound at level `alpha`, i.e. the low end of the
    two-sided 1 - 2 alpha interval, above 0.5) alarms on at most ~alpha of A/A windows.
    One split rather than K-fold cross-fitting: with K folds, fold j's AUC measures how well the chance pattern the
    other folds' labels left in their model matches fold j's labels, and fold k's measures the same match the other
    way round, so the fold AUCs move together and their averaged variance is underestimated (no unbiased estimator
    exists: Bengio and Grandvalet 2004). Measured with five folds on A/A windows of 5k rows a side: AUC sd 0.0075
    (lake rows) and 0.0073 (independent numpy rows) against an estimated 0.0058, and 4 alarms in 60 at alpha 1 %."""
    import lightgbm as lgb

    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    names = list(features)  # the monitor leaves out the features the calendar moves
    ref_columns = feature_matrix(reference_sample, names, what="reference sample")
    live_columns = feature_matrix(live, names, what="live window")
    rng = np.random.default_rng(seed)

    def take(columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        matrix = np.column_stack([columns[name] for name in names])
        if rows > max_rows:
            matrix = matrix[np.sort(rng.choice(rows, size=max_rows, replace=False))]
        return matrix

    ref = take(ref_columns, len(reference_sample))
    cur = take(live_columns, len(live))
    if min(len(ref), len(cur)) < CLASSIFIER_MIN_ROWS:
        raise ValueError(
            f"classifier check needs at least {CLASSIFIER_MIN_ROWS} rows a side (reference {len(ref)}, live {len(cur)})"
        )
    X = np.vstack([ref, cur])
    y = np.concatenate([np.zeros(len(ref)), np.ones(len(cur))])
    held_out = np.zeros(len(y), dtype=bool)  # stratified halves: each side's rows shuffled, every second held out
    for side in (0, 1):
        held_out[rng.permutation(np.flatnonzero(y == side))[::2]] = True
    params = {**CLASSIFIER_PARAMS, "seed": int(seed)}
    booster = lgb.train(params, lgb.Dataset(X[~held_out], label=y[~held_out], feature_name=names), CLASSIFIER_ROUNDS)
    auc, variance = _delong(booster.predict(X[held_out]), y[held_out] == 1)
    se = float(np.sqrt(variance))
    z = float(norm.ppf(1 - alpha))
    return {
        "auc": float(auc),
        "ci_low": auc - z * se,
        "ci_high": auc + z * se,
        "ci_level": 1 - 2 * alpha,
        "se": se,
        "alpha": alpha,
        "drifted": bool(auc - z * se > 0.5 and auc >= MIN_CLASSIFIER_AUC),
        "n_reference": int(len(ref)),
        "n_live": int(len(cur)),
        "n_held_out": int(held_out.sum()),
    }
