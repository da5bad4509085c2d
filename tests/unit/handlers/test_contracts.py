"""Values that two runtimes must agree on but cannot import from each other agree."""

from __future__ import annotations

from handlers.common import contracts
from training_jobs import baselines, evaluate, evaluation_report, input_contract


def test_training_writes_the_serving_files_the_deployer_publishes() -> None:
    # The training container ships without handlers/: it names the files itself.
    assert input_contract.INPUT_SCHEMA_FILE == contracts.INPUT_SCHEMA_FILE
    assert baselines.BASELINE_FILE == contracts.BASELINE_FILE
    assert evaluate.SERVING_FILES == contracts.SERVING_FILES
    assert baselines.BASELINE_FORMAT == contracts.BASELINE_FORMAT


def test_the_reports_directions_are_the_ones_the_gates_read() -> None:
    # evaluation.json states "higher"/"lower"; the registry metadata and the gates read the same words
    assert (evaluation_report.HIGHER, evaluation_report.LOWER) == (contracts.HIGHER, contracts.LOWER)
    for name, direction in evaluation_report.METRIC_DIRECTIONS.items():
        assert contracts.metric_direction(name) is (direction == contracts.HIGHER)


def test_every_metric_evaluation_reports_has_a_known_direction() -> None:
    # GIVEN every metric evaluation.json can hold (what the pipeline and champion gates compare)
    reported = {*evaluation_report.CLASSIFICATION_METRICS, *evaluation_report.REGRESSION_METRICS}
    # THEN the gates know which way each one is better
    assert {name for name in reported if contracts.metric_direction(name) is None} == set()
    assert {name for name in reported if contracts.lower_is_better(name)} == {"rmse", "mae"}


def test_directions_ignore_case_and_split_prefixes() -> None:
    assert contracts.lower_is_better("val_RMSE") and contracts.lower_is_better("test_log_loss")
    assert not contracts.lower_is_better("accuracy") and not contracts.lower_is_better("unknown")
