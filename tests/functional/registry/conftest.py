"""The model registry on moto: a model package group and a helper that registers versions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.model_registry import ModelRegistry, ModelVersion
from tests.functional.conftest import REGION

GROUP = "mlp-dev-models"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-gpu-py311"
ARTIFACTS = "s3://mlp-dev-artifacts-123456789012-us-east-1/models"
TRAINING_JOB = "arn:aws:sagemaker:us-east-1:123456789012:training-job/mlp-dev-train-2024-06-01"


@pytest.fixture
def sagemaker(aws_credentials: None) -> Iterator[Any]:
    """A moto SageMaker client (created inside the mock) with this stack's model package group."""
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model_package_group(ModelPackageGroupName=GROUP)
        yield client


@pytest.fixture
def registry(sagemaker: Any) -> ModelRegistry:
    return ModelRegistry(sagemaker)


@pytest.fixture
def register(registry: ModelRegistry) -> Callable[..., ModelVersion]:
    """Register one version the way the training pipeline does (overrides by keyword)."""

    def make(run: int = 1, **overrides: Any) -> ModelVersion:
        arguments: dict[str, Any] = {
            "dataset_version": f"2024-06-0{run}T00-00-00Z",
            "code_version": f"commit{run:04d}",
            "metrics": {"accuracy": 0.9 + run / 100, "loss": 0.3 - run / 100},
            "evaluation_report_uri": f"{ARTIFACTS}/run-{run}/evaluation/evaluation.json",
            "hyperparameters": {"epochs": 10 + run, "lr": "0.001"},
            "training_job": TRAINING_JOB,
            "model_name": "digits-cnn",
            "task": "digits",
        }
        arguments.update(overrides)
        return registry.register(GROUP, f"{ARTIFACTS}/run-{run}/model.tar.gz", IMAGE, **arguments)

    return make
