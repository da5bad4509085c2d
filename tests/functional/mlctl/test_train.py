"""``mlctl train``: StartPipelineExecution, then follow the steps to Succeeded (exit 0) or Failed (exit 1).

moto runs StartPipelineExecution and DescribePipelineExecution (its executions succeed at once) but
has no ListPipelineExecutionSteps: that one goes to a Stubber, as does a whole failing run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from mlctl import train
from tests.functional.mlctl.conftest import PIPELINE, REGION, Platform, Result, SplitClient, use_clients

EXECUTION = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/{PIPELINE}/execution/4r83jejmhorv"
STEPS_REQUEST = {"PipelineExecutionArn": ANY, "SortOrder": "Ascending"}


def steps(*pairs: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    listed = []
    for name, status, *reason in pairs:
        step: dict[str, Any] = {"StepName": name, "StepStatus": status}
        if reason:
            step["FailureReason"] = reason[0]
        listed.append(step)
    return {"PipelineExecutionSteps": listed}


def execution(status: str, **extra: Any) -> dict[str, Any]:
    return {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": status, **extra}


@pytest.fixture
def pipeline(platform: Platform) -> Platform:
    """The stack's training pipeline on moto."""
    platform.sagemaker.create_pipeline(
        PipelineName=PIPELINE,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}),
        RoleArn="arn:aws:iam::123456789012:role/mlp-dev-training",
    )
    return platform


@pytest.fixture
def stub() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_train_starts_the_pipeline_and_follows_it_to_success(
    pipeline: Platform,
    stub: tuple[Any, Stubber],
    mlctl: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the pipeline on moto, whose steps (ListPipelineExecutionSteps) are stubbed
    stub_client, stubber = stub
    stubber.add_response(
        "list_pipeline_execution_steps",
        steps(("PrepareData", "Succeeded"), ("TrainModel", "Succeeded"), ("RegisterModel", "Succeeded")),
        STEPS_REQUEST,
    )
    split = SplitClient(pipeline.sagemaker, stub_client, frozenset({"list_pipeline_execution_steps"}))
    use_clients(monkeypatch, train, sagemaker=split)

    # WHEN a training run is started for one dataset version
    result = mlctl("train", "--dataset-version", "2024-06-01T00-00-00Z", "--poll", "0", *pipeline.target)

    # THEN the pipeline got that DatasetVersion, each step is printed once, and it exits 0
    assert result.code == 0, result.err
    summaries = pipeline.sagemaker.list_pipeline_executions(PipelineName=PIPELINE)[
        "PipelineExecutionSummaries"
    ]
    (arn,) = [summary["PipelineExecutionArn"] for summary in summaries]
    assert f"started {PIPELINE}: {arn}" in result.out
    parameters = pipeline.sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert parameters["PipelineParameters"] == [{"Name": "DatasetVersion", "Value": "2024-06-01T00-00-00Z"}]
    for name in ("PrepareData", "TrainModel", "RegisterModel"):
        assert result.out.count(f"step {name}: Succeeded") == 1
    assert "pipeline execution Succeeded" in result.out


def test_no_wait_only_starts_it(
    pipeline: Platform, mlctl: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the pipeline on moto (calls recorded)
    split = SplitClient(pipeline.sagemaker, None, frozenset())
    use_clients(monkeypatch, train, sagemaker=split)

    # WHEN started with --no-wait and an input URI
    result = mlctl("train", "--no-wait", "--input-data-uri", "s3://raw-bucket/raw/2024-06/", *pipeline.target)

    # THEN it returns after StartPipelineExecution, with the execution ARN
    assert result.code == 0, result.err
    assert split.names() == ["start_pipeline_execution"]
    request = split.calls[0][1]
    assert request["PipelineParameters"] == [
        {"Name": "InputDataUri", "Value": "s3://raw-bucket/raw/2024-06/"}
    ]
    assert f"started {PIPELINE}: arn:aws:sagemaker:{REGION}:123456789012:pipeline/" in result.out


def test_a_failed_step_fails_the_run_with_its_reason(
    platform: Platform,
    stub: tuple[Any, Stubber],
    mlctl: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a run whose training step fails on its second look
    stub_client, stubber = stub
    reason = "AlgorithmError: CUDA out of memory"
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {
            "PipelineName": PIPELINE,
            "PipelineExecutionDescription": ANY,
            "ClientRequestToken": ANY,
        },
    )
    stubber.add_response(
        "describe_pipeline_execution", execution("Executing"), {"PipelineExecutionArn": EXECUTION}
    )
    stubber.add_response(
        "list_pipeline_execution_steps",
        steps(("PrepareData", "Succeeded"), ("TrainModel", "Executing")),
        STEPS_REQUEST,
    )
    stubber.add_response(
        "describe_pipeline_execution", execution("Executing"), {"PipelineExecutionArn": EXECUTION}
    )
    stubber.add_response(
        "list_pipeline_execution_steps",
        steps(("PrepareData", "Succeeded"), ("TrainModel", "Executing")),
        STEPS_REQUEST,
    )
    stubber.add_response(
        "describe_pipeline_execution",
        execution("Failed", FailureReason="Step failure: One or multiple steps failed."),
        {"PipelineExecutionArn": EXECUTION},
    )
    stubber.add_response(
        "list_pipeline_execution_steps",
        steps(("PrepareData", "Succeeded"), ("TrainModel", "Failed", reason)),
        STEPS_REQUEST,
    )
    use_clients(monkeypatch, train, sagemaker=stub_client)

    # WHEN the run is followed
    result = mlctl("train", "--poll", "0", *platform.target)

    # THEN exit 1 with the failing step's reason; each status change was printed once
    assert result.code == 1
    assert result.err.strip() == (
        f"mlctl train: pipeline execution Failed at step TrainModel: {reason} ({EXECUTION})"
    )
    assert result.out.count("step PrepareData: Succeeded") == 1
    assert result.out.count("step TrainModel: Executing") == 1
    assert result.out.count(f"step TrainModel: Failed: {reason}") == 1


def test_a_run_still_going_at_the_deadline_fails(
    platform: Platform,
    stub: tuple[Any, Stubber],
    mlctl: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a run that is still executing
    stub_client, stubber = stub
    stubber.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION})
    stubber.add_response("describe_pipeline_execution", execution("Executing"))
    stubber.add_response("list_pipeline_execution_steps", steps(("PrepareData", "Executing")))
    use_clients(monkeypatch, train, sagemaker=stub_client)

    # WHEN followed with no time left THEN exit 1, saying it keeps running
    result = mlctl("train", "--timeout", "0", *platform.target)
    assert result.code == 1
    assert result.err.strip() == (
        f"mlctl train: pipeline execution still Executing after 0 s; it keeps running: {EXECUTION}"
    )


def test_a_missing_pipeline_is_one_line(platform: Platform, mlctl: Callable[..., Result]) -> None:
    # GIVEN no pipeline on moto WHEN a run is started THEN the AWS error is one line, exit 1
    result = mlctl("train", "--no-wait", *platform.target)
    assert result.code == 1
    assert result.err.startswith("mlctl train: StartPipelineExecution failed:")
    assert len(result.err.strip().splitlines()) == 1
