"""Uplift metrics against vectors computed by hand (scikit-uplift's definitions, see propensity/uplift/metrics.py)."""

import numpy as np
import pytest

from propensity.uplift.metrics import (
    perfect_qini_curve,
    perfect_uplift_curve,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
    uplift_auc_score,
    uplift_curve,
)

# Six rows ranked by score already: outcome, arm (1 treated) and predicted uplift.
Y = np.array([1, 0, 1, 0, 1, 0])
T = np.array([1, 1, 0, 0, 1, 0])
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_qini_curve_by_hand():
    # top n: treated responders - control responders * treated / control (0 while no control row is in)
    x, y = qini_curve(Y, SCORE, T)
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(y, [0, 1, 1, -1, 0, 0.5, 1])


def test_uplift_curve_by_hand():
    # top n: (treated rate - control rate) * n
    x, y = uplift_curve(Y, SCORE, T)
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(y, [0, 1, 1, -1.5, 0, 5 / 6, 2])


def test_perfect_curves_by_hand_are_evaluated_at_the_end_of_each_tie():
    # perfect Qini score y*t - y*(1-t) = [1, 0, -1, 0, 1, 0]: ties at 1 (2 rows), 0 (3 rows), -1 (1 row)
    x, y = perfect_qini_curve(Y, T)
    np.testing.assert_allclose(x, [0, 2, 5, 6])
    np.testing.assert_allclose(y, [0, 2, 2, 1])
    # one control responder, one treated non-responder: the summand is the arm, scores [3, 1, 0, 2, 3, 2]
    x, y = perfect_uplift_curve(Y, T)
    np.testing.assert_allclose(x, [0, 2, 4, 5, 6])
    np.testing.assert_allclose(y, [0, 2, 4, 10 / 3, 2])


def test_normalised_areas_by_hand():
    # Qini: model area 2.0, random line 6 * 1 / 2 = 3.0, perfect area 9.5
    assert qini_auc_score(Y, SCORE, T) == pytest.approx((2.0 - 3.0) / (9.5 - 3.0))
    # uplift: model area 7/3, random line 6 * 2 / 2 = 6, perfect area 43/3
    assert uplift_auc_score(Y, SCORE, T) == pytest.approx((7 / 3 - 6) / (43 / 3 - 6))
    # without negative effects the perfect Qini curve is (0,0) -> (gain, gain) -> (n, gain), gain = 2 - 3 * 1/3
    x, y = perfect_qini_curve(Y, T, negative_effect=False)
    np.testing.assert_allclose(x, [0, 1, 6])
    np.testing.assert_allclose(y, [0, 1, 1])


def test_the_perfect_ranking_scores_one_and_a_reversed_one_less_than_random():
    perfect = Y * T - Y * (1 - T)
    assert qini_auc_score(Y, perfect, T) == pytest.approx(1.0)
    assert qini_auc_score(Y, -perfect, T) < 0


def test_uplift_at_k_by_hand():
    # overall: top ceil(6 * 0.5) = 3 rows: treated [1, 0] -> 0.5, control [1] -> 1
    assert uplift_at_k(Y, SCORE, T, k=0.5) == pytest.approx(-0.5)
    # by group: top ceil(3 * 0.5) = 2 of each arm: treated [1, 0], control [1, 0]
    assert uplift_at_k(Y, SCORE, T, k=0.5, strategy="by_group") == pytest.approx(0.0)
    # top ceil(6 * 0.3) = 2 rows are both treated: undefined, said so
    with pytest.raises(ValueError, match="only one group"):
        uplift_at_k(Y, SCORE, T, k=0.3)


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="both treated and control"):
        qini_auc_score(Y, SCORE, np.ones(6))
    with pytest.raises(ValueError, match="0 \\(control\\) or 1"):
        qini_auc_score(Y, SCORE, np.full(6, 2))
    with pytest.raises(ValueError, match="differ in length"):
        uplift_auc_score(Y, SCORE[:5], T)
    with pytest.raises(ValueError, match="share in"):
        uplift_at_k(Y, SCORE, T, k=1.5)
