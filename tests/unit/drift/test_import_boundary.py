"""The drift monitor and the champion gate run in Lambda: no torch, pulumi or numpy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {"torch", "pulumi", "pulumi_aws", "numpy", "sagemaker", "infra", "training_jobs"}


def imported_after(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("module", "dependency"),
    [("handlers.monitoring.handler", "aws_lambda_powertools"), ("handlers.registry.champion", "botocore")],
)
def test_lambda_modules_import_no_heavy_stack(module: str, dependency: str) -> None:
    loaded = imported_after(module)
    assert loaded.isdisjoint(FORBIDDEN), f"{module} imports {sorted(loaded & FORBIDDEN)}"
    assert dependency in loaded  # the check does see transitive imports


def test_the_baseline_module_is_standard_library_only() -> None:
    loaded = imported_after("training_jobs.baselines")
    assert loaded.isdisjoint({"torch", "numpy", "pulumi", "handlers"})
