"""A verified deployment publishes the served version's input schema and drift baseline to the
folder the API and drift Lambdas read (moto S3 and registry)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.deployer import handler as deployer
from handlers.deployer.plan import TAG_MODEL_PACKAGE
from handlers.deployer.settings import DeploySettings
from handlers.registry.client import ModelRegistry
from tests.functional.conftest import REGION

BUCKET = "mlp-dev-artifacts"
GROUP = "mlp-dev-models"
REPORT = f"s3://{BUCKET}/evaluation/run-7/evaluation.json"
DESTINATION = f"s3://{BUCKET}/serving/"
SCHEMA = {"kind": "image", "height": 8, "width": 8, "channels": 1, "max_value": 16}
BASELINE = {"feature_names": ["pixel_0"], "features": []}


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield {"s3": s3, "sagemaker": sagemaker}


def _version(aws: dict[str, Any], *, with_baseline: bool = True) -> Any:
    s3 = aws["s3"]
    s3.put_object(Bucket=BUCKET, Key="evaluation/run-7/evaluation.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="evaluation/run-7/input-schema.json", Body=json.dumps(SCHEMA).encode())
    if with_baseline:
        s3.put_object(Bucket=BUCKET, Key="evaluation/run-7/baseline.json", Body=json.dumps(BASELINE).encode())
    return ModelRegistry(aws["sagemaker"]).register(
        GROUP, f"s3://{BUCKET}/models/job/output/model.tar.gz", "image", evaluation_report_uri=REPORT
    )


def _settings(serving_files_uri: str | None = DESTINATION) -> DeploySettings:
    return DeploySettings(
        group=GROUP,
        endpoint_name="mlp-dev-endpoint",
        execution_role_arn="arn:aws:iam::123456789012:role/model",
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        region=REGION,
        serving_files_uri=serving_files_uri,
    )


def _read(aws: dict[str, Any], key: str) -> Any:
    return json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_the_served_versions_files_replace_the_published_ones(aws: dict[str, Any]) -> None:
    # GIVEN an older version's files already published, and a new version verified on the endpoint
    aws["s3"].put_object(Bucket=BUCKET, Key="serving/input-schema.json", Body=b'{"kind": "text"}')
    version = _version(aws)
    # WHEN the deployer publishes for the version the endpoint's tags name
    written = deployer.publish_for_endpoint(
        aws["sagemaker"], _settings(), {TAG_MODEL_PACKAGE: version.arn}, s3=aws["s3"]
    )
    # THEN both files are the new version's, where the API and the drift monitor read them
    assert written == [f"{DESTINATION}input-schema.json", f"{DESTINATION}baseline.json"]
    assert _read(aws, "serving/input-schema.json") == SCHEMA
    assert _read(aws, "serving/baseline.json") == BASELINE


def test_a_file_the_version_lacks_is_withdrawn_never_left_from_another_model(aws: dict[str, Any]) -> None:
    # GIVEN an older model's schema and baseline published, and a version without a baseline
    aws["s3"].put_object(Bucket=BUCKET, Key="serving/input-schema.json", Body=b'{"kind": "text"}')
    aws["s3"].put_object(Bucket=BUCKET, Key="serving/baseline.json", Body=b'{"old": true}')
    version = _version(aws, with_baseline=False)
    written = deployer.publish_for_endpoint(
        aws["sagemaker"], _settings(), {TAG_MODEL_PACKAGE: version.arn}, s3=aws["s3"]
    )
    # THEN its schema is published and the old baseline is gone (drift then builds one from captures)
    assert written == [f"{DESTINATION}input-schema.json"]
    assert _read(aws, "serving/input-schema.json") == SCHEMA
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="serving/")["Contents"]
    assert [item["Key"] for item in listed] == ["serving/input-schema.json"]


def test_a_version_without_a_report_withdraws_both_files(aws: dict[str, Any]) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key="serving/input-schema.json", Body=b'{"kind": "text"}')
    version = ModelRegistry(aws["sagemaker"]).register(
        GROUP, f"s3://{BUCKET}/registered/model.tar.gz", "image"
    )
    written = deployer.publish_for_endpoint(
        aws["sagemaker"], _settings(), {TAG_MODEL_PACKAGE: version.arn}, s3=aws["s3"]
    )
    assert written == []
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="serving/")


def test_nothing_is_published_when_the_stack_does_not_ask_for_it(aws: dict[str, Any]) -> None:
    version = _version(aws)
    tags = {TAG_MODEL_PACKAGE: version.arn}
    assert deployer.publish_for_endpoint(aws["sagemaker"], _settings(None), tags, s3=aws["s3"]) == []
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="serving/")
