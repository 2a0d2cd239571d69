"""What the model code, its Dagster assets, the SageMaker pipeline and its jobs agree on, importable without the model
code itself (the pipeline builder's environment has no LightGBM or pandas): the splits, the quality gates' default
bounds, and the training container's layout and file names."""

SPLITS = ("train", "valid", "test")

MAX_ECE = 0.02  # expected calibration error bound on the test split (DESIGN's budget)
CHAMPION_TOLERANCE = 0.002  # how much worse than the champion (log-loss, same test set) still passes
MIN_POSITIVE_SESSIONS = 15  # purchasing sessions needed in validation and in test to calibrate and judge a model

PROCESSING_DIR = "/opt/ml/processing"  # a SageMaker Processing job's inputs and outputs live under it
EVALUATION_FILE = "evaluation.json"  # the evaluation job's report; the pipeline's condition reads `gates.passed`
PACKAGE_FILE = "model.tar.gz"  # the evaluated candidate, packed as the serving container loads it
# Each SageMaker pipeline execution's own copy of its training set, `<prefix>/<Dagster run id>/`, in the lake's
# bucket but apart from the aws profile's lake (PROPENSITY_LAKE_URI, s3://<bucket>/propensity/lake), whose
# training_dataset table is replaced by every run while an execution may still read its input.
TRAINING_RUNS_PREFIX = "propensity/training-runs"
