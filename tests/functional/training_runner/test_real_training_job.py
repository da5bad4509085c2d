"""The real training script run as SageMaker would run it: prepared data in S3 -> a servable model."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.training.job import JobStatus, TrainingJobSpec
from emulator.training.runner import LocalTrainingRunner
from tests.functional.training_runner.conftest import ROLE_ARN, Aws, prepare_task, upload_splits
from training_jobs.metrics import METRIC_DEFINITIONS

TASK = "digits"


@pytest.fixture(scope="module")
def prepared_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_task(TASK, tmp_path_factory)


def digits_job(aws: Aws, channels: dict[str, str], name: str, **hyperparameters: str) -> TrainingJobSpec:
    return TrainingJobSpec(
        job_name=name,
        entry_point="training_jobs.train",
        role_arn=ROLE_ARN,
        output_s3_uri=f"s3://{aws.bucket}/models",
        checkpoint_s3_uri=f"s3://{aws.bucket}/checkpoints/{name}",
        input_channels=channels,
        hyperparameters={"task": TASK, "epochs": "3", **hyperparameters},
        metric_definitions=METRIC_DEFINITIONS,
        environment={"OMP_NUM_THREADS": "1"},
    )


def test_the_training_script_completes_with_metrics_and_a_servable_artifact(
    in_process_aws: Aws, in_process_runner: LocalTrainingRunner, prepared_digits: Path
) -> None:
    # GIVEN prepared digits splits in S3
    channels = upload_splits(in_process_aws, prepared_digits)
    # WHEN the real entry point runs as a training job
    result = in_process_runner.run(digits_job(in_process_aws, channels, "digits-real-1"))
    # THEN the job is Completed with the metrics SageMaker would have parsed from its log
    assert result.status is JobStatus.COMPLETED, result.failure_reason
    assert result.final_metrics["validation_accuracy"] >= 0.9
    assert in_process_runner.describe_job("digits-real-1") == result
    # AND the model.tar.gz is the serving layout, with no repack step
    members = in_process_aws.get_tar("models/digits-real-1/output/model.tar.gz")
    assert {"model.pt", "model_config.json", "code/inference.py", "code/requirements.txt"} <= set(members)
    assert "code/models/vision.py" in members
    # AND the checkpoints are in S3 for a restarted (spot) job to resume from
    assert any(key.endswith(".pt") for key in in_process_aws.keys("checkpoints/digits-real-1/"))


def test_a_bad_hyperparameter_fails_the_job_naming_the_parameter(
    in_process_aws: Aws, in_process_runner: LocalTrainingRunner, prepared_digits: Path
) -> None:
    channels = upload_splits(in_process_aws, prepared_digits)
    result = in_process_runner.run(
        digits_job(in_process_aws, channels, "digits-bad-hp", learning_rate="fast")
    )
    assert result.status is JobStatus.FAILED
    assert "learning_rate" in result.failure_reason
    assert "fast" in result.failure_reason
    assert not in_process_aws.keys("models/digits-bad-hp/output/model.tar.gz")
