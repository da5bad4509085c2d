"""Values a producer and its consumers must agree on, defined once.

Training writes a model's serving files and metrics; the deployer publishes the files where the
API and drift Lambdas read them; the pipeline's gate, the champion gate and local mode judge the
metrics by the same directions. The training container ships without this package, so the file
names it writes are checked against these by a test.
"""

from __future__ import annotations

from collections.abc import Mapping

# The CloudWatch namespace of the metrics the platform's functions emit and its alarms watch.
METRICS_NAMESPACE = "ml-platform"
# In the model container's environment (the deployer sets them): the endpoint and variant the
# model serves, which the model server's CloudWatch metrics carry as dimensions.
ENDPOINT_NAME_ENV = "ENDPOINT_NAME"
VARIANT_NAME_ENV = "VARIANT_NAME"

# --- request limits the prediction API, the model server and the built-in handler share ------------
# SageMaker real-time endpoints take payloads up to 6 MB: the model server's body limit (its
# SAGEMAKER_MAX_PAYLOAD_IN_MB, read by the server and by the built-in code/inference.py alike) and
# the most the API may be configured to accept, so no body the API passes on is too large for it.
MAX_PAYLOAD_MB = 6
MAX_BODY_BYTES = MAX_PAYLOAD_MB * 1024 * 1024
# JSON nested deeper than this is refused before parsing: a recursive parser would crash on it.
MAX_JSON_DEPTH = 64

# --- files a trained model carries, and where a verified deployment publishes them -----------------
INPUT_SCHEMA_FILE = "input-schema.json"
BASELINE_FILE = "baseline.json"
SERVING_FILES = (INPUT_SCHEMA_FILE, BASELINE_FILE)
# One JSON request body the model answers, inside its model.tar.gz (relative to the archive's root):
# the model server's warm-up passes send it before /ping turns healthy. The built-in packager and
# `mlctl models register` write it; the training container names it itself (a test keeps them equal).
SAMPLE_REQUEST_FILE = "code/sample-request.json"
# The "format" of baseline.json (training_jobs/baselines.py writes it; the training container
# ships without this package, so a test keeps the two equal).
BASELINE_FORMAT = "ml-platform/baseline/v1"
SERVING_PREFIX = "serving"  # in the artifacts bucket
INPUT_SCHEMA_KEY = f"{SERVING_PREFIX}/{INPUT_SCHEMA_FILE}"
BASELINE_KEY = f"{SERVING_PREFIX}/{BASELINE_FILE}"

# --- what a registered version records in its CustomerMetadataProperties ---------------------------
# The training pipeline's RegisterModel step writes them; the registry client, mlctl and the
# champion gate read them.
METRIC_PREFIX = "metric."  # one per metric of evaluation.json
# Which way each of those metrics is better, as evaluation.json states it: "higher" or "lower".
METRIC_DIRECTION_PREFIX = "direction."
HYPERPARAMETER_PREFIX = "hyperparameter."
DATASET_VERSION_KEY = "dataset-version"  # the dataset's content hash, from evaluation.json
TRIGGER_DATASET_VERSION_KEY = "trigger-dataset-version"  # the execution's DatasetVersion parameter
TRAINING_JOB_KEY = "training-job"
CODE_VERSION_KEY = "code-version"
# Set at approval (``mlctl models approve --variant``): the production variant the version replaces;
# unset, the first variant. The endpoint's other variants keep their versions and weights.
TARGET_VARIANT_KEY = "target-variant"

# --- evaluation metrics: which way is better -------------------------------------------------------
# evaluation.json states each metric's direction (training_jobs/evaluation_report.py); these names
# let a version registered without one still be compared.
HIGHER, LOWER = "higher", "lower"
HIGHER_IS_BETTER = frozenset(
    {"accuracy", "balanced_accuracy", "f1", "macro_f1", "precision", "recall", "auc", "roc_auc", "r2"}
)
LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "loss", "log_loss", "logloss", "error", "error_rate"})

# The champion gate: how much worse (absolute, per metric) a new version may be than the served one.
DEFAULT_PROMOTION_MARGIN = 0.02


def metric_direction(name: str) -> bool | None:
    """``True`` when higher is better, ``False`` when lower is, ``None`` when unknown.

    ``val_`` and ``test_`` prefixes are ignored, and case does not matter.
    """
    key = name.lower().removeprefix("val_").removeprefix("test_")
    if key in HIGHER_IS_BETTER:
        return True
    if key in LOWER_IS_BETTER:
        return False
    return None


def recorded_directions(properties: Mapping[str, str]) -> dict[str, bool]:
    """Metric name -> higher is better, from a version's ``direction.<name>`` metadata."""
    return {
        key.removeprefix(METRIC_DIRECTION_PREFIX): value == HIGHER
        for key, value in properties.items()
        if key.startswith(METRIC_DIRECTION_PREFIX) and value in (HIGHER, LOWER)
    }


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of metric ``name`` is a better model (unknown metrics: higher is)."""
    return metric_direction(name) is False
