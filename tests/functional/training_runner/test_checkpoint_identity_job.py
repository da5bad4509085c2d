"""Training jobs sharing a checkpoint URI: another run's checkpoint fails the job with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.training.job import JobStatus, TrainingJobSpec
from emulator.training.runner import LocalTrainingRunner
from tests.functional.training_runner.conftest import ROLE_ARN, Aws, prepare_task, upload_splits

TASK = "diabetes"
CHECKPOINTS = "checkpoints/shared"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_task(TASK, tmp_path_factory)


def job(aws: Aws, channels: dict[str, str], name: str, **hyperparameters: str) -> TrainingJobSpec:
    """A job of the real entry point whose checkpoints share one S3 prefix, as spot restarts do."""
    return TrainingJobSpec(
        job_name=name,
        entry_point="training_jobs.train",
        role_arn=ROLE_ARN,
        output_s3_uri=f"s3://{aws.bucket}/models",
        checkpoint_s3_uri=f"s3://{aws.bucket}/{CHECKPOINTS}",
        input_channels=channels,
        hyperparameters={"task": TASK, "epochs": "1", **hyperparameters},
        environment={"OMP_NUM_THREADS": "1"},
    )


def test_a_checkpoint_of_another_learning_rate_fails_the_job_and_restart_trains_anew(
    in_process_aws: Aws, in_process_runner: LocalTrainingRunner, prepared: Path
) -> None:
    # GIVEN a completed job whose checkpoint is in S3
    channels = upload_splits(in_process_aws, prepared)
    first = in_process_runner.run(job(in_process_aws, channels, "lr-small", learning_rate="0.001"))
    assert first.status is JobStatus.COMPLETED, first.failure_reason
    checkpoints = in_process_aws.keys(CHECKPOINTS)
    # WHEN a job with another learning rate restores that checkpoint
    refused = in_process_runner.run(
        job(in_process_aws, channels, "lr-large", learning_rate="0.005", epochs="2")
    )
    # THEN it fails, its FailureReason naming the learning rate and both values; no model is published
    assert refused.status is JobStatus.FAILED
    assert refused.failure_reason is not None
    assert refused.failure_reason.startswith("CheckpointMismatchError: ")
    assert "learning_rate 0.001 in the checkpoint, 0.005 in this run" in refused.failure_reason
    assert not in_process_aws.keys("models/lr-large/output/model.tar.gz")
    assert in_process_aws.keys(CHECKPOINTS) == checkpoints
    # AND the same job with restart chosen trains from scratch and completes
    restarted = in_process_runner.run(
        job(in_process_aws, channels, "lr-large-2", learning_rate="0.005", on_checkpoint_mismatch="restart")
    )
    assert restarted.status is JobStatus.COMPLETED, restarted.failure_reason
    assert in_process_aws.keys("models/lr-large-2/output/model.tar.gz")
