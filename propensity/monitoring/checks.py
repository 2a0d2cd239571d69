"""The monitor checks the closed loop acts on: asset and check names, defined once for the assets that evaluate
them, the retraining sensor that watches them and the loop's timeline."""

from __future__ import annotations

from propensity.monitoring.performance import CALIBRATION_CHECK, PERFORMANCE_CHECK

DRIFT_ASSET = "drift_report"
PERFORMANCE_ASSET = "performance_monitor"
KPI_ASSET = "kpi_monitor"
FEATURE_DRIFT_CHECK = "no_feature_drift"
MULTIVARIATE_DRIFT_CHECK = "no_multivariate_drift"
SAMPLE_RATIO_CHECK = "holdout_share_as_configured"
KPI_REGRESSION_CHECK = "no_kpi_regression"

# (asset, check) pairs whose failure means the live model no longer fits the traffic: these retrain.
RETRAIN_CHECKS = (
    (DRIFT_ASSET, FEATURE_DRIFT_CHECK),
    (DRIFT_ASSET, MULTIVARIATE_DRIFT_CHECK),
    (PERFORMANCE_ASSET, PERFORMANCE_CHECK),
    (PERFORMANCE_ASSET, CALIBRATION_CHECK),
)
# Metadata key on a retrain check's evaluation: the first start among the sessions of the window it judged (ISO 8601,
# the events' clock), from which a retrain after a detected change draws its validation and test sessions. Not the
# first decision's time: a storefront replaying past days (`make loop`) decides today on last week's sessions.
WINDOW_START = "window_start"
# Metadata key set to False on a check that passed without judging (too few rows in its window): no evidence that the
# model fits again, so the retrain sensor keeps the change point it holds.
JUDGED = "judged"
