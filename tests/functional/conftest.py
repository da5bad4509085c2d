"""moto fixtures: fake credentials first, then the mock, then clients created inside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake keys, so no test can ever reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[dict[str, Any]]:
    """An in-process AWS: a factory of clients, all inside one ``mock_aws``."""
    with mock_aws():
        yield {
            name: boto3.client(name, region_name=REGION)
            for name in ("s3", "kms", "sagemaker", "events", "sqs")
        }
