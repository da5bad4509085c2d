"""Paths of the local runner whose behaviour does not depend on the transport: moto in-process only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.training import describe as training_outcomes
from emulator.training.errors import (
    ArtifactExistsError,
    DuplicateTrainingJobError,
    InvalidTrainingJobError,
    TrainingJobNotFoundError,
)
from emulator.training.job import JobStatus
from emulator.training.runner import LocalTrainingRunner, describe_job


def recorded_job_names(aws: Any) -> set[str]:
    return {job["TrainingJobName"] for job in aws.sagemaker.list_training_jobs()["TrainingJobSummaries"]}


@pytest.mark.parametrize(
    "job_name",
    ["", "-starts-with-hyphen", "ends-with-hyphen-", "under_score", "dots.in.name", "x" * 64],
)
def test_job_names_follow_sagemakers_rules(
    in_process_aws: Any,
    in_process_runner: LocalTrainingRunner,
    write_script: Any,
    new_spec: Any,
    job_name: str,
) -> None:
    # GIVEN a name SageMaker's CreateTrainingJob would reject
    spec = new_spec(write_script("metrics"), job_name)

    # WHEN it is run, THEN it is refused before anything is recorded
    with pytest.raises(InvalidTrainingJobError, match="invalid training job name"):
        in_process_runner.run(spec)
    assert recorded_job_names(in_process_aws) == set()


def test_longest_valid_job_name_is_accepted(
    in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a 63-character name with inner hyphens, the most SageMaker allows
    name = "a--" + "b" * 60

    # WHEN it is run, THEN it completes
    assert in_process_runner.run(new_spec(write_script("metrics"), name)).status == JobStatus.COMPLETED


def test_duplicate_job_name_is_refused_and_first_model_kept(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a job that completed and published its model
    in_process_runner.run(new_spec(write_script("resume"), "nightly"))
    first_model = in_process_aws.get("models/nightly/output/model.tar.gz")

    # WHEN a second job of the same name is run
    with pytest.raises(DuplicateTrainingJobError, match="nightly"):
        in_process_runner.run(new_spec(write_script("metrics"), "nightly"))

    # THEN the first job's record and model are untouched
    assert in_process_runner.describe_job("nightly").status == JobStatus.COMPLETED
    assert in_process_aws.get("models/nightly/output/model.tar.gz") == first_model


def test_existing_model_artifact_is_never_overwritten(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a model already at the key a new job would write (e.g. the SageMaker record was lost)
    in_process_aws.put("models/job-1/output/model.tar.gz", b"the model in production")

    # WHEN a job of that name is run
    with pytest.raises(ArtifactExistsError):
        in_process_runner.run(new_spec(write_script("resume")))

    # THEN the model is unchanged and no job was recorded or run
    assert in_process_aws.get("models/job-1/output/model.tar.gz") == b"the model in production"
    assert recorded_job_names(in_process_aws) == set()


def test_crash_without_failure_file_reports_the_end_of_stderr(
    in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a script that raises without writing output/failure
    spec = new_spec(write_script("crash"))

    # WHEN it runs
    result = in_process_runner.run(spec)

    # THEN the job failed with the exit code and the exception from stderr as its reason
    assert result.status == JobStatus.FAILED
    assert result.failure_reason is not None
    assert result.failure_reason.startswith("AlgorithmError: training exited with code 1")
    assert "ValueError: column 'y' is missing" in result.failure_reason
    assert in_process_runner.describe_job("job-1").failure_reason == result.failure_reason


def test_empty_channel_fails_the_job_before_training(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a channel prefix with no objects under it
    spec = new_spec(
        write_script("metrics"), input_channels={"train": f"s3://{in_process_aws.bucket}/nothing"}
    )

    # WHEN the job runs
    result = in_process_runner.run(spec)

    # THEN it failed as SageMaker fails it, and the script never ran
    assert result.status == JobStatus.FAILED
    assert "No S3 objects found" in (result.failure_reason or "")
    assert result.log_path is not None
    assert not result.log_path.exists()


def test_job_ignoring_sigterm_is_killed_after_the_grace_period(
    in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a script that ignores SIGTERM and never ends
    spec = new_spec(write_script("stubborn"), max_runtime_seconds=1)

    # WHEN it runs past its runtime limit (the runner's grace period is one second)
    result = in_process_runner.run(spec)

    # THEN run() returned and the job failed for its runtime
    assert result.status == JobStatus.FAILED
    assert (result.failure_reason or "").startswith("MaxRuntimeExceeded")


def test_two_processes_run_under_torchrun_and_only_rank_zero_writes(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a script that joins a process group, all-reduces rank+1, and writes only on rank 0
    spec = new_spec(write_script("distributed"), processes=2)
    lines: list[str] = []

    # WHEN it runs with two processes
    result = in_process_runner.run(spec, on_log=lines.append)

    # THEN both ranks of a world of 2 ran and agreed on the sum 1 + 2
    assert result.status == JobStatus.COMPLETED, result.failure_reason
    assert {line for line in lines if line.startswith("rank=")} == {
        "rank=0 world_size=2 total=3.0",
        "rank=1 world_size=2 total=3.0",
    }
    # AND the model holds rank 0's file alone
    members = in_process_aws.get_tar("models/job-1/output/model.tar.gz")
    assert members == {"rank0.txt": b"world_size=2 total=3.0"}


def test_broken_log_callback_does_not_break_the_job(
    in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a progress display that raises on the first line
    def broken(line: str) -> None:
        raise RuntimeError("display closed")

    # WHEN a job runs with it
    result = in_process_runner.run(
        new_spec(write_script("metrics"), metric_definitions=[{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]),
        on_log=broken,
    )

    # THEN the job still completed and every line reached the log and the metric parser
    assert result.status == JobStatus.COMPLETED
    assert result.final_metrics == {"loss": 0.125}
    assert result.log_path is not None
    assert len(result.log_path.read_text().splitlines()) == 3


def test_describe_job_of_a_job_sagemaker_ran_is_describe_training_job(in_process_aws: Any) -> None:
    # GIVEN a job created directly in the API, carrying no local record (as a real SageMaker job)
    in_process_aws.sagemaker.create_training_job(
        TrainingJobName="cloud-job",
        AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/mlp-training",
        OutputDataConfig={"S3OutputPath": "s3://somewhere/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )

    # WHEN it is described
    result = describe_job(in_process_aws.sagemaker, "cloud-job")

    # THEN DescribeTrainingJob's own status, metrics and artifact are the answer
    assert result.status == JobStatus.COMPLETED
    assert result.final_metrics == {"train:progress": 100.0}
    assert result.model_artifacts == "s3://somewhere/models/cloud-job/output/model.tar.gz"


def test_describe_unknown_job_raises_not_found(in_process_aws: Any) -> None:
    with pytest.raises(TrainingJobNotFoundError, match="no-such-job"):
        describe_job(in_process_aws.sagemaker, "no-such-job")


def test_runner_module_stays_free_of_torch_and_pulumi() -> None:
    # GIVEN a fresh interpreter; WHEN it imports the runner (mlctl and local mode do)
    code = "import sys, emulator.training.runner; print(' '.join(m.split('.')[0] for m in sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )

    # THEN neither torch nor pulumi was loaded: the runner only starts processes that use torch
    assert "training_jobs" in loaded
    assert loaded.isdisjoint({"torch", "pulumi", "pulumi_aws", "sagemaker"})


def test_module_entry_point_reads_the_contract_through_sm_env(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, tmp_path: Path, new_spec: Any
) -> None:
    # GIVEN a training package (entry point by module name) that reads the container contract
    # through the repo's sm_env module, as training_jobs.train does
    package = tmp_path / "pkgs" / "toy_training"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(MODULE_ENTRY_POINT)
    in_process_aws.put("data/train/rows.csv", "y\n1\n")
    spec = new_spec(
        Path("unused"),
        entry_point="toy_training.train",
        input_channels={"train": f"s3://{in_process_aws.bucket}/data/train"},
        hyperparameters={"epochs": 2},
        environment={"PYTHONPATH": str(tmp_path / "pkgs"), "MLP_FLAG": "on"},
    )

    # WHEN it runs
    result = in_process_runner.run(spec)

    # THEN sm_env saw the job's hyperparameters, channel and model folder, and our variable
    assert result.status == JobStatus.COMPLETED, result.failure_reason
    seen = json.loads(in_process_aws.get_tar("models/job-1/output/model.tar.gz")["seen.json"])
    assert seen == {
        "hyperparameters": {"epochs": "2"},
        "channels": {"train": ["rows.csv"]},
        "is_main_process": True,
        "flag": "on",
    }


MODULE_ENTRY_POINT = """
import json, os
from training_jobs.sm_env import TrainingEnv

env = TrainingEnv.from_environ()
seen = {
    "hyperparameters": env.hyperparameters(),
    "channels": {name: sorted(p.name for p in path.iterdir()) for name, path in env.channels.items()},
    "is_main_process": env.is_main_process,
    "flag": os.environ["MLP_FLAG"],
}
(env.model_dir / "seen.json").write_text(json.dumps(seen))
"""


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"role_arn": "not-a-role"}, "IAM role ARN"),
        ({"output_s3_uri": "/local/path"}, "not an S3 URI"),
        ({"input_channels": {"bad channel": "s3://b/x"}}, "invalid channel name"),
        ({"metric_definitions": [{"Name": "loss", "Regex": "loss=[0-9.]+"}]}, "with a group"),
        ({"processes": 0}, "at least 1"),
    ],
)
def test_specs_sagemaker_would_reject_are_refused(
    in_process_aws: Any, in_process_runner: LocalTrainingRunner, new_spec: Any, override: Any, message: str
) -> None:
    # GIVEN a spec with one field SageMaker would reject
    spec = new_spec(Path("never-run.py"), **override)

    # WHEN it is run, THEN it is refused with the reason and nothing is recorded
    with pytest.raises(InvalidTrainingJobError, match=message):
        in_process_runner.run(spec)
    assert recorded_job_names(in_process_aws) == set()


def test_unreachable_checkpoint_bucket_fails_the_job_with_a_client_error(
    in_process_runner: LocalTrainingRunner, write_script: Any, new_spec: Any
) -> None:
    # GIVEN a checkpoint URI in a bucket that does not exist
    spec = new_spec(write_script("resume"), checkpoint_s3_uri="s3://no-such-bucket-here/ckpt")

    # WHEN the job runs
    result = in_process_runner.run(spec)

    # THEN it failed (it did not raise) with SageMaker's kind of reason, and that is recorded
    assert result.status == JobStatus.FAILED
    assert (result.failure_reason or "").startswith("ClientError: Checkpoint download")
    assert in_process_runner.describe_job("job-1") == result


def test_describe_training_job_reports_the_recorded_outcome_to_any_client(
    in_process_runner: LocalTrainingRunner,
    in_process_aws: Any,
    write_script: Any,
    new_spec: Any,
) -> None:
    # GIVEN the emulator's DescribeTrainingJob, and a job the local runner completed
    undo = training_outcomes.extend_moto()
    try:
        spec = new_spec(
            write_script("metrics"), metric_definitions=[{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
        )
        result = in_process_runner.run(spec)

        # WHEN a plain client describes it (no mlp:* tag reading of its own)
        described = in_process_aws.sagemaker.describe_training_job(TrainingJobName=spec.job_name)
    finally:
        undo()

    # THEN it says Completed with the final metrics, as SageMaker reports a job it ran
    assert described["TrainingJobStatus"] == "Completed"
    assert [(m["MetricName"], m["Value"]) for m in described["FinalMetricDataList"]] == [
        ("loss", result.final_metrics["loss"])
    ]
    assert result.final_metrics == {"loss": 0.125}
