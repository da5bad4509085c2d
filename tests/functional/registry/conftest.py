"""The model registry on moto: a model package group and a helper that registers versions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from handlers.registry.client import ModelRegistry, ModelVersion
from tests.functional.conftest import ARTIFACTS, GROUP, IMAGE  # noqa: F401 - used by the tests here

TRAINING_JOB = "arn:aws:sagemaker:us-east-1:123456789012:training-job/mlp-dev-train-2024-06-01"


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
