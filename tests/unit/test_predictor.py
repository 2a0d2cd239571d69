"""The compiled tree predictor gives LightGBM's own raw scores: on trained models (learned NaN directions, NaN as zero,
zero as missing), on hand-written trees covering every missing type, default direction and zero-band threshold, at the
thresholds themselves, and in LightGBM's summation order. Models it cannot evaluate exactly are refused."""

import math

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from propensity.models.training import LightGBMSettings, train_lightgbm
from serving.predictor import K_ZERO_THRESHOLD, MISSING_NAN, MISSING_NONE, MISSING_ZERO, TreeEnsemblePredictor

TOLERANCE = 1e-9
KZ = K_ZERO_THRESHOLD

# Values at and around every edge LightGBM treats specially: NaN, signed zeros, the zero band [-kZero, kZero] and
# its neighbours, denormals, infinities.
SPECIAL_VALUES = [
    math.nan,
    0.0,
    -0.0,
    KZ,
    -KZ,
    np.nextafter(KZ, 0.0),
    -np.nextafter(KZ, 0.0),
    np.nextafter(KZ, math.inf),
    -np.nextafter(KZ, math.inf),
    1e-36,
    -1e-36,
    1e-40,
    -1e-40,
    5e-324,
    -5e-324,
    math.inf,
    -math.inf,
    1e300,
    -1e300,
]


def _synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Session-like features: counts (ties at every threshold), zero-heavy amounts, signed values, a history that is
    missing for new users (NaN carries signal, so LightGBM learns a direction for it), tiny values near zero."""
    rng = np.random.default_rng(seed)
    views = rng.poisson(3.0, n).astype(float)
    spend = np.where(rng.random(n) < 0.5, 0.0, rng.gamma(2.0, 20.0, n))
    trend = rng.normal(0.0, 1.0, n)
    history = rng.normal(1.0, 1.0, n)
    new_user = rng.random(n) < 0.35
    history[new_user] = np.nan
    tiny = rng.choice([0.0, 1e-36, -1e-36, 2e-35, -2e-35, 1.0, -1.0], n)
    recency = np.round(rng.exponential(5.0, n), 1)
    recency[rng.random(n) < 0.15] = np.nan
    logit = (
        0.3 * views
        - 0.02 * spend
        + 0.8 * trend
        + np.where(new_user, 1.0, -0.5 * history)
        + 0.5 * np.sign(tiny)
        - 0.1 * np.nan_to_num(recency, nan=20.0)
        - 1.0
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    X = pd.DataFrame(
        {
            "views": views,
            "spend": spend,
            "trend": trend,
            "history": history,
            "tiny": tiny,
            "recency": recency,
            "spend_copy": spend * 2.0,
            "noise": rng.normal(size=n),
        }
    )
    return X, y


def _train(settings_extra: dict, n: int = 4000, **kwargs) -> lgb.Booster:
    X, y = _synthetic(n, seed=7)
    cut = int(n * 0.75)
    settings = LightGBMSettings(
        num_leaves=15,
        min_data_in_leaf=10,
        max_rounds=80,
        early_stopping_rounds=20,
        threads=1,
        extra={"min_data_in_bin": 1, **settings_extra},
        **kwargs,
    )
    return train_lightgbm(X[:cut], y[:cut], X[cut:], y[cut:], settings)


def _probe_rows(predictor: TreeEnsemblePredictor, base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows whose features sit exactly on split thresholds, one ulp either side, or on a special value; the rest of
    each row comes from real data. Plus the all-NaN, all-zero and all-band rows."""
    rng = np.random.default_rng(seed)
    candidates = []
    for f in range(predictor.n_features):
        thresholds = [t.threshold[k] for t in predictor.trees for k, g in enumerate(t.split_feature) if g == f]
        values = set(SPECIAL_VALUES)
        for t in thresholds:
            values.update((t, np.nextafter(t, -math.inf), np.nextafter(t, math.inf)))
        candidates.append(np.array(sorted(values, key=lambda v: (math.isnan(v), v))))
    rows = base[rng.integers(0, len(base), n)].copy()
    for f in range(predictor.n_features):
        replace = rng.random(n) < 0.5
        rows[replace, f] = rng.choice(candidates[f], replace.sum())
    fixed = [np.full(predictor.n_features, v) for v in (math.nan, 0.0, -0.0, KZ, -KZ, math.inf, -math.inf)]
    return np.vstack([rows, *fixed])


def _assert_matches_lightgbm(booster: lgb.Booster, predictor: TreeEnsemblePredictor, X: np.ndarray) -> None:
    expected = booster.predict(X, raw_score=True)
    results = {
        "raw_score_one": np.array([predictor.raw_score_one(row) for row in X.tolist()]),
        "raw_score": predictor.raw_score(X),
        "raw_score_loop": predictor.raw_score_loop(X),
        "raw_score_vectorised": predictor.raw_score_vectorised(X),
    }
    for name, got in results.items():
        worst = int(np.argmax(np.abs(got - expected)))
        np.testing.assert_allclose(
            got,
            expected,
            rtol=0,
            atol=TOLERANCE,
            err_msg=f"{name} differs from LightGBM, worst row {X[worst].tolist()}",
        )


def _splits(predictor: TreeEnsemblePredictor) -> list[tuple[int, bool, float]]:
    """(missing type, default left, threshold) of every split."""
    return [
        (t.missing_type[k], t.default_left[k], t.threshold[k])
        for t in predictor.trees
        for k in range(len(t.split_feature))
    ]


@pytest.mark.parametrize(
    ("extra", "missing_type"),
    [
        ({}, MISSING_NAN),  # learned NaN directions
        ({"use_missing": False}, MISSING_NONE),  # NaN is scored as 0.0
        ({"zero_as_missing": True}, MISSING_ZERO),  # NaN and (near-)zeros share the default direction
    ],
    ids=["nan-as-missing", "no-missing", "zero-as-missing"],
)
def test_trained_models_score_exactly_like_lightgbm(extra, missing_type):
    booster = _train(extra)
    predictor = TreeEnsemblePredictor.from_booster(booster)
    assert predictor.num_trees > 5
    splits = [(left, t) for m, left, t in _splits(predictor) if m == missing_type]
    if missing_type == MISSING_NONE:  # NaN -> 0.0 goes left at some splits, right at others
        assert {t >= 0.0 for _, t in splits} == {True, False}
    else:  # both default directions were learned
        assert {left for left, _ in splits} == {True, False}
    X, _ = _synthetic(3000, seed=11)
    probes = _probe_rows(predictor, X.to_numpy(), 3000, seed=3)
    _assert_matches_lightgbm(booster, predictor, np.vstack([X.to_numpy(), probes]))


def test_booster_scores_with_the_iterations_predict_uses():
    booster = _train({}, learning_rate=0.3)
    assert 0 < booster.best_iteration < 80, "training should have stopped early"
    X, _ = _synthetic(500, seed=5)
    predictor = TreeEnsemblePredictor.from_booster(booster)
    assert predictor.num_trees == booster.best_iteration
    _assert_matches_lightgbm(booster, predictor, X.to_numpy())
    first_five = TreeEnsemblePredictor.from_booster(booster, num_iteration=5)
    assert first_five.num_trees == 5
    np.testing.assert_allclose(
        first_five.raw_score(X.to_numpy()), booster.predict(X, raw_score=True, num_iteration=5), rtol=0, atol=TOLERANCE
    )


def test_text_model_file_and_dump_json_give_the_same_scores(tmp_path):
    booster = _train({})
    path = tmp_path / "model.txt"
    path.write_text(booster.model_to_string())
    from_file = TreeEnsemblePredictor.from_model_file(path)
    from_dump = TreeEnsemblePredictor.from_dump(booster.dump_model())
    assert from_file.feature_names == from_dump.feature_names == booster.feature_name()
    X = _probe_rows(from_file, _synthetic(500, seed=2)[0].to_numpy(), 1000, seed=4)
    np.testing.assert_array_equal(from_dump.raw_score(X), from_file.raw_score(X))
    _assert_matches_lightgbm(lgb.Booster(model_file=str(path)), from_file, X)


def test_dataframe_columns_are_taken_by_name_and_rows_of_the_wrong_length_are_refused():
    booster = _train({})
    predictor = TreeEnsemblePredictor.from_booster(booster)
    X, _ = _synthetic(200, seed=9)
    shuffled = X[list(reversed(X.columns))]
    np.testing.assert_allclose(
        predictor.raw_score(shuffled), booster.predict(X, raw_score=True), rtol=0, atol=TOLERANCE
    )
    assert predictor.raw_score_one(X.iloc[0].to_numpy()) == predictor.raw_score_one(X.iloc[0].tolist())
    with pytest.raises(ValueError, match="expected 8 feature values"):
        predictor.raw_score_one([1.0] * 7)
    with pytest.raises(ValueError, match="8 columns"):
        predictor.raw_score(np.zeros((3, 9)))


def test_single_leaf_model_predicts_its_constant():
    X, y = _synthetic(300, seed=1)
    booster = train_lightgbm(
        X[:200], y[:200], X[200:], y[200:], LightGBMSettings(min_data_in_leaf=1000, max_rounds=5, threads=1)
    )
    predictor = TreeEnsemblePredictor.from_booster(booster)
    assert all(tree.num_leaves == 1 for tree in predictor.trees)
    constant = booster.predict(X[:1], raw_score=True)[0]
    assert constant != 0.0  # the initial score (log-odds of the base rate) lives in the single leaf
    assert predictor.raw_score_one([math.nan] * 8) == constant
    np.testing.assert_array_equal(predictor.raw_score(X.to_numpy()), np.full(len(X), constant))
    np.testing.assert_array_equal(predictor.raw_score_vectorised(X.to_numpy()), np.full(len(X), constant))


def test_categorical_split_is_refused():
    rng = np.random.default_rng(0)
    n = 2000
    X = pd.DataFrame({"category": pd.Categorical(rng.choice(list("abcdefgh"), n)), "value": rng.normal(size=n)})
    y = X["category"].isin(["a", "c", "f"]).to_numpy().astype(int)
    booster = train_lightgbm(
        X[:1500],
        y[:1500],
        X[1500:],
        y[1500:],
        LightGBMSettings(min_data_in_leaf=20, max_rounds=5, threads=1, extra={"max_cat_to_onehot": 1}),
    )
    text = booster.model_to_string()
    assert any(line.startswith("num_cat=") and line != "num_cat=0" for line in text.splitlines()), (
        "the model should contain categorical splits"
    )
    with pytest.raises(NotImplementedError, match="categorical"):
        TreeEnsemblePredictor.from_model_string(text)
    with pytest.raises(NotImplementedError, match="categorical"):
        TreeEnsemblePredictor.from_dump(booster.dump_model())


# ------------------------------------------------------------------------------------------ hand-written models


def _tree(index, splits, leaves):
    """One tree in LightGBM's text format; splits are (feature, threshold, decision_type, left, right)."""

    def join(values):
        return " ".join(repr(float(v)) if isinstance(v, float) else str(v) for v in values)

    n = len(leaves)
    feature, threshold, decision, left, right = (list(column) for column in zip(*splits)) if splits else ([],) * 5
    return "\n".join(
        [
            f"Tree={index}",
            f"num_leaves={n}",
            "num_cat=0",
            f"split_feature={join(feature)}",
            f"split_gain={join([1] * (n - 1))}",
            f"threshold={join(threshold)}",
            f"decision_type={join(decision)}",
            f"left_child={join(left)}",
            f"right_child={join(right)}",
            f"leaf_value={join(leaves)}",
            f"leaf_weight={join([1] * n)}",
            f"leaf_count={join([1] * n)}",
            f"internal_value={join([0] * (n - 1))}",
            f"internal_weight={join([1] * (n - 1))}",
            f"internal_count={join([1] * (n - 1))}",
            "is_linear=0",
            "shrinkage=1",
            "",
            "",
        ]
    )


def _model(trees, n_features=2, header_extra=()):
    header = [
        "tree",
        "version=v4",
        "num_class=1",
        "num_tree_per_iteration=1",
        "label_index=0",
        f"max_feature_idx={n_features - 1}",
        "objective=binary sigmoid:1",
        *header_extra,
        "feature_names=" + " ".join(f"f{i}" for i in range(n_features)),
        "feature_infos=" + " ".join(["none"] * n_features),
        "",
        "",
    ]
    return "\n".join(header) + "".join(trees) + "end of trees\n"


def _decision_type(missing_type: int, default_left: bool) -> int:
    return (missing_type << 2) | (2 if default_left else 0)


EDGE_THRESHOLDS = [
    -KZ,
    KZ,
    0.0,
    -0.0,
    1e-36,
    -1e-36,
    np.nextafter(-KZ, -math.inf),
    np.nextafter(KZ, math.inf),
    -1.5,
    1.5,
    1e300,
    math.inf,
    -math.inf,
]


def test_every_missing_type_default_direction_and_edge_threshold_matches_lightgbm():
    trees, rng = [], np.random.default_rng(0)
    for missing_type in (MISSING_NONE, MISSING_ZERO, MISSING_NAN):
        for default_left in (False, True):
            for threshold in EDGE_THRESHOLDS:
                # feature 0 at the root, feature 1 below: both children paths are exercised
                splits = [
                    (0, threshold, _decision_type(missing_type, default_left), 1, -3),
                    (1, threshold, _decision_type(missing_type, not default_left), -1, -2),
                ]
                trees.append(_tree(len(trees), splits, rng.normal(size=3).round(6).tolist()))
    text = _model(trees)
    booster = lgb.Booster(model_str=text)
    predictor = TreeEnsemblePredictor.from_model_string(text)
    values = sorted(
        set(SPECIAL_VALUES + EDGE_THRESHOLDS + [-1.5000000000000002, 1.4999999999999998, 2.0, -2.0]),
        key=lambda v: (math.isnan(v), v),
    )
    X = np.array([(a, b) for a in values for b in values], dtype=np.float64)
    _assert_matches_lightgbm(booster, predictor, X)
    # and not only within the tolerance: bit for bit
    np.testing.assert_array_equal(predictor.raw_score(X), booster.predict(X, raw_score=True))


def test_leaf_values_are_summed_in_lightgbm_order():
    # 1e16 + 1.0 rounds back to 1e16: one after another (LightGBM) the ones vanish and the sum is 0.0; the exact sum
    # and numpy's pairwise sum are 8.0
    leaves = [1e16] + [1.0] * 8 + [-1e16]
    trees = [
        _tree(i, [(0, 0.5, _decision_type(MISSING_NAN, True), -1, -2)], [value, value])
        for i, value in enumerate(leaves)
    ]
    text = _model(trees)
    expected = lgb.Booster(model_str=text).predict(np.zeros((40, 2)), raw_score=True)
    assert expected[0] != math.fsum(leaves) and expected[0] != np.sum(leaves), "the order must matter here"
    predictor = TreeEnsemblePredictor.from_model_string(text)
    assert predictor.raw_score_one([0.0, 0.0]) == expected[0]
    np.testing.assert_array_equal(predictor.raw_score_vectorised(np.zeros((40, 2))), expected)


def test_deep_trees_are_walked_and_shallower_ones_inlined():
    def chain(index, thresholds):  # node k: f0 <= thresholds[k] ? leaf k : node k + 1; all missing types in turn
        depth = len(thresholds)
        splits = [
            (
                0,
                t,
                _decision_type((MISSING_NONE, MISSING_ZERO, MISSING_NAN)[k % 3], k % 2 == 0),
                ~k,
                k + 1 if k + 1 < depth else ~depth,
            )
            for k, t in enumerate(thresholds)
        ]
        return _tree(index, splits, [float(k) / 7 for k in range(depth + 1)])

    deep = sorted({float(k - 64) for k in range(127)} | {-KZ, KZ / 2, np.nextafter(KZ, math.inf)})
    text = _model([chain(0, deep), chain(1, [float(k) for k in range(60)]), chain(2, [-KZ, 0.0, 1.0])])
    predictor = TreeEnsemblePredictor.from_model_string(text)
    assert predictor.trees[0].depth() == 130 and predictor.walked_trees == [0]
    values = sorted(set(SPECIAL_VALUES + deep + np.arange(-66.0, 66.0, 0.5).tolist()), key=lambda v: (math.isnan(v), v))
    X = np.array([[v, 0.0] for v in values])
    _assert_matches_lightgbm(lgb.Booster(model_str=text), predictor, X)
    walk_all = TreeEnsemblePredictor.from_model_string(text, max_inline_depth=2)
    assert walk_all.walked_trees == [0, 1, 2]
    np.testing.assert_array_equal(walk_all.raw_score_loop(X), predictor.raw_score_loop(X))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda text: text.replace("objective=binary sigmoid:1", "objective=binary sigmoid:1\naverage_output"),
            "average_output",
        ),
        (
            lambda text: text.replace("num_class=1\nnum_tree_per_iteration=1", "num_class=3\nnum_tree_per_iteration=3"),
            "classes",
        ),
        (lambda text: text.replace("is_linear=0", "is_linear=1", 1), "linear"),
    ],
    ids=["random-forest", "multiclass", "linear-tree"],
)
def test_models_it_cannot_score_exactly_are_refused(change, message):
    text = _model([_tree(0, [(0, 0.5, 2, -1, -2)], [0.1, 0.2])])
    TreeEnsemblePredictor.from_model_string(text)  # the unchanged model is fine
    with pytest.raises(NotImplementedError, match=message):
        TreeEnsemblePredictor.from_model_string(change(text))


def test_malformed_trees_are_refused():
    good = _model([_tree(0, [(0, 0.5, 2, 1, -3), (1, 0.5, 2, -1, -2)], [0.1, 0.2, 0.3])])
    TreeEnsemblePredictor.from_model_string(good)
    cyclic = good.replace("left_child=1 -1", "left_child=0 -1")
    with pytest.raises(ValueError, match="tree 0"):
        TreeEnsemblePredictor.from_model_string(cyclic)
    with pytest.raises(ValueError, match="feature 5"):
        TreeEnsemblePredictor.from_model_string(good.replace("split_feature=0 1", "split_feature=0 5"))
    with pytest.raises(ValueError, match="not a LightGBM text model"):
        TreeEnsemblePredictor.from_model_string("hello")
