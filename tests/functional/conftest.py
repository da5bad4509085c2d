"""moto fixtures: fake credentials first, then the mock, then clients created inside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
# This stack's model package group, an inference image and the artifacts prefix, as registered.
GROUP = "mlp-dev-models"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-gpu-py311"
ARTIFACTS = "s3://mlp-dev-artifacts-123456789012-us-east-1/models"


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[dict[str, Any]]:
    """An in-process AWS: a factory of clients, all inside one ``mock_aws``."""
    with mock_aws():
        yield {
            name: boto3.client(name, region_name=REGION)
            for name in ("s3", "kms", "sagemaker", "events", "sqs", "sns")
        }


@pytest.fixture
def sagemaker(aws_credentials: None) -> Iterator[Any]:
    """A moto SageMaker client (created inside the mock) with this stack's model package group."""
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield client
