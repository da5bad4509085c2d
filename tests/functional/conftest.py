"""moto fixtures: fake credentials first, then the mock, then clients created inside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[dict[str, Any]]:
    """An in-process AWS: a factory of clients, all inside one ``mock_aws``."""
    with mock_aws():
        yield {
            name: boto3.client(name, region_name=REGION)
            for name in ("s3", "kms", "sagemaker", "events", "sqs")
        }
