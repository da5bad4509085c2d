"""The registry and deployer run in Lambda: they never import torch, pulumi or the SageMaker SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("torch", "pulumi", "pulumi_aws", "sagemaker", "infra")


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("module", "dependency"),
    [("handlers.deployer.handler", "aws_lambda_powertools"), ("handlers.registry.client", "botocore")],
)
def test_lambda_modules_stay_slim(module: str, dependency: str) -> None:
    loaded = imported_after(module)
    assert loaded.isdisjoint(FORBIDDEN), f"{module} imports {sorted(loaded & set(FORBIDDEN))}"
    assert dependency in loaded  # the check does see what the module imports, transitively
