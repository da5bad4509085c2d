"""The local training runner against moto, in-process and over HTTP on loopback (``aws`` runs both)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator.training.job import JobStatus, TrainingJobResult
from emulator.training.runner import LocalTrainingRunner

LOSS_METRIC = {"Name": "train:loss", "Regex": r"train_loss=([0-9.eE+-]+)"}
RESUME_METRIC = {"Name": "resumed_from", "Regex": r"resumed_from=(\d+)"}
TRAIN_ROWS = {"data/train/part-1.csv": "y\n1\n2\n", "data/train/nested/deeper/part-2.csv": "y\n3\n6\n"}


def job_folder(result: TrainingJobResult) -> Path:
    assert result.job_dir is not None, "run() reports the local job folder"
    return result.job_dir


def seen_by_script(result: TrainingJobResult) -> dict[str, Any]:
    """What the ``inspect`` script recorded about its environment."""
    return json.loads((job_folder(result) / "output" / "data" / "seen.json").read_text())


def upload_train_channel(aws: Any) -> str:
    for key, body in TRAIN_ROWS.items():
        aws.put(key, body)
    return f"s3://{aws.bucket}/data/train"


def test_completed_job_uploads_artifacts_and_records_final_metrics(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a CSV channel in S3 and a script that trains on it and prints its loss per epoch
    spec = new_spec(
        write_script("train"),
        input_channels={"train": upload_train_channel(aws)},
        metric_definitions=[LOSS_METRIC],
    )
    lines: list[str] = []

    # WHEN the runner runs the job
    result = runner.run(spec, on_log=lines.append)

    # THEN the job completed; its final metric is the last epoch's loss, as SageMaker reports it
    assert result.status == JobStatus.COMPLETED, result.failure_reason
    printed = [float(line.split("train_loss=")[1]) for line in lines if "train_loss=" in line]
    assert len(printed) == 3
    assert result.final_metrics == {"train:loss": pytest.approx(printed[-1])}
    # AND model.tar.gz sits under the job's key with the model folder's files at the archive root
    model_key = "models/job-1/output/model.tar.gz"
    assert result.model_artifacts == f"s3://{aws.bucket}/{model_key}"
    members = aws.get_tar(model_key)
    assert set(members) == {"model.json", "extra/vocab.txt"}
    assert json.loads(members["model.json"]) == {"mean": 3.0}
    # AND output/data went up as output.tar.gz
    assert aws.get_tar("models/job-1/output/output.tar.gz") == {"report.txt": b"ok"}
    # AND the log file holds what the callback saw
    assert result.log_path is not None
    assert result.log_path.read_text().splitlines() == lines


def test_describe_job_reads_back_the_recorded_outcome(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a job that completed, printing a metric several times
    spec = new_spec(
        write_script("metrics"),
        input_channels={"train": upload_train_channel(aws)},
        metric_definitions=[LOSS_METRIC],
    )
    result = runner.run(spec)

    # WHEN its record is read back through the SageMaker API
    described = runner.describe_job("job-1")

    # THEN it matches the run's result (the last value printed), not moto's canned metric
    assert described == result
    assert described.final_metrics == {"train:loss": 0.125}
    assert "train:progress" not in described.final_metrics
    # AND the SageMaker record itself carries what the job was created with
    raw = aws.sagemaker.describe_training_job(TrainingJobName="job-1")
    assert raw["ModelArtifacts"]["S3ModelArtifacts"] == result.model_artifacts
    assert raw["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == spec.input_channels["train"]


def test_channel_files_keep_their_relative_paths(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a channel whose objects sit in nested folders under the prefix
    spec = new_spec(write_script("inspect"), input_channels={"train": upload_train_channel(aws)})

    # WHEN the job runs
    result = runner.run(spec)

    # THEN the script found every object at its path relative to the prefix, in the channel folder
    assert result.status == JobStatus.COMPLETED, result.failure_reason
    seen = seen_by_script(result)
    assert seen["channel_files"] == ["nested/deeper/part-2.csv", "part-1.csv"]
    assert seen["env"]["SM_CHANNEL_TRAIN"] == str(job_folder(result) / "input" / "data" / "train")
    assert json.loads(seen["env"]["SM_CHANNELS"]) == ["train"]
    assert json.loads(seen["env"]["SM_TRAINING_ENV"])["job_name"] == "job-1"
    # AND the config files SageMaker writes describe the channel and the one host
    config = job_folder(result) / "input" / "config"
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {"train"}
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]


def test_hyperparameters_arrive_as_strings(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN hyperparameters of several Python types
    spec = new_spec(
        write_script("inspect"),
        input_channels={"train": upload_train_channel(aws)},
        hyperparameters={"epochs": 3, "lr": 0.1, "use_amp": True, "optimizer": "adamw"},
    )

    # WHEN the job runs
    result = runner.run(spec)

    # THEN hyperparameters.json, SM_HPS and the command line all carry them as strings
    expected = {"epochs": "3", "lr": "0.1", "use_amp": "true", "optimizer": "adamw"}
    config = job_folder(result) / "input" / "config" / "hyperparameters.json"
    assert json.loads(config.read_text()) == expected
    seen = seen_by_script(result)
    assert json.loads(seen["env"]["SM_HPS"]) == expected
    assert seen["argv"] == ["--epochs", "3", "--lr", "0.1", "--use_amp", "true", "--optimizer", "adamw"]
    # AND the SageMaker record holds the same strings
    described = aws.sagemaker.describe_training_job(TrainingJobName="job-1")
    assert described["HyperParameters"] == expected


def test_failing_script_gives_failed_job_with_reason_from_failure_file(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a script that writes output/failure (with quotes and parentheses) and exits 1
    spec = new_spec(
        write_script("fail"),
        checkpoint_s3_uri=f"s3://{aws.bucket}/checkpoints/run-a",
        metric_definitions=[{"Name": "loss", "Regex": r"loss=([0-9.]+)"}],
    )

    # WHEN the job runs
    result = runner.run(spec)

    # THEN it failed with the failure file's text, the same when read back from the record
    reason = "Loss diverged: got 'nan' at step 7 (lr=10.0)"
    assert (result.status, result.failure_reason) == (JobStatus.FAILED, reason)
    assert runner.describe_job("job-1") == result
    assert result.final_metrics == {"loss": 0.9}
    # AND no model was published, but the failure and the checkpoint written before it were
    assert result.model_artifacts is None
    assert "models/job-1/output/model.tar.gz" not in aws.keys("models/")
    assert aws.get("models/job-1/output/failure").decode() == reason
    assert json.loads(aws.get("checkpoints/run-a/state.json")) == {"step": 7}


def test_checkpoints_are_synced_and_restored_into_the_next_job(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN two jobs sharing a checkpoint URI, as a restarted spot job does
    script = write_script("resume")
    common = {
        "checkpoint_s3_uri": f"s3://{aws.bucket}/checkpoints/run-b/",
        "metric_definitions": [RESUME_METRIC],
    }

    # WHEN the first job runs, then the second
    first = runner.run(new_spec(script, "attempt-1", **common))
    second = runner.run(new_spec(script, "attempt-2", **common))

    # THEN the first started fresh and saved step 1; the second resumed from it and saved step 2
    assert first.final_metrics == {"resumed_from": 0.0}
    assert second.final_metrics == {"resumed_from": 1.0}
    assert json.loads(aws.get("checkpoints/run-b/state.json")) == {"step": 2}
    # AND each job published its own model
    assert {"models/attempt-1/output/model.tar.gz", "models/attempt-2/output/model.tar.gz"} <= aws.keys()


def test_job_past_its_max_runtime_is_stopped_and_failed(
    aws: Any, runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a script that never finishes but saves a checkpoint when told to stop (SIGTERM)
    spec = new_spec(
        write_script("slow"), max_runtime_seconds=1, checkpoint_s3_uri=f"s3://{aws.bucket}/checkpoints/slow"
    )

    # WHEN it runs with a one-second runtime limit
    result = runner.run(spec)

    # THEN the job failed for its runtime, recorded as such, and published no model
    assert result.status == JobStatus.FAILED
    assert result.failure_reason is not None
    assert result.failure_reason.startswith("MaxRuntimeExceeded")
    assert runner.describe_job("job-1") == result
    assert "models/job-1/output/model.tar.gz" not in aws.keys("models/")
    # AND what it saved in SageMaker's SIGTERM window reached S3
    assert json.loads(aws.get("checkpoints/slow/state.json")) == {"step": 1}
