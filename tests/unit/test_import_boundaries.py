"""Each runtime stays slim: code that runs in one place never imports another place's heavy stack.

Checked in a fresh interpreter per module, so nothing imported by another test hides a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.lambda_package import HANDLER_ENTRYPOINTS

HEAVY = {"torch", "pulumi", "pulumi_aws", "sagemaker"}
PULUMI = {"pulumi", "pulumi_aws", "sagemaker"}
LAMBDA_MODULES = sorted(
    {entry.rsplit(".", 1)[0] for entry in HANDLER_ENTRYPOINTS.values()} | {"infra.lambda_package"}
)


def imported_after(module: str) -> set[str]:
    """Top-level packages present after importing ``module`` in a fresh interpreter."""
    code = f"import json, sys, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


BOUNDARIES = [
    # The CLI and local mode read config without Pulumi; `mlctl --help` stays fast.
    ("infra.stack_config", HEAVY),
    ("mlctl.cli", HEAVY),
    # The Pulumi program never imports torch, nor the Lambda handlers' runtime (only their settings).
    ("infra.data_lake", {"torch"}),
    ("infra.training", {"torch"}),
    ("infra.deployer", {"torch", "aws_lambda_powertools"}),
    ("infra.api", {"torch", "aws_lambda_powertools"}),
    ("infra.monitoring", {"torch", "aws_lambda_powertools"}),
    # The pipeline definition reads these: no deep-learning stack.
    ("training_jobs.metrics", {"torch", "numpy", *PULUMI}),
    ("training_jobs.evaluation_report", {"torch", "numpy", *PULUMI}),
    ("training_jobs.tasks", {"torch", *PULUMI}),
    # Processing and training containers never import Pulumi or the SageMaker SDK.
    ("training_jobs.prepare", {"torch", "sklearn", *PULUMI}),
    ("training_jobs.train", {"sklearn", "boto3", *PULUMI}),
    ("training_jobs.evaluate", {"sklearn", *PULUMI}),
    ("training_jobs.sm_env", PULUMI),
    ("emulator.training.runner", {"torch", *PULUMI}),
    # The serving handler runs in the model container with torch alone.
    ("handlers.serving.inference", {"training_jobs", "boto3", "pydantic", *PULUMI}),
    ("handlers.serving.server", {"training_jobs", "aws_lambda_powertools", *PULUMI}),
    # Lambda code: no torch, no Pulumi, no SageMaker SDK.
    *((module, HEAVY) for module in LAMBDA_MODULES),
]


@pytest.mark.parametrize(("module", "forbidden"), BOUNDARIES)
def test_module_does_not_import_another_runtimes_stack(module: str, forbidden: set[str]) -> None:
    loaded = imported_after(module)
    assert module.split(".", maxsplit=1)[0] in loaded
    assert loaded.isdisjoint(forbidden), f"{module} imports {sorted(loaded & forbidden)}"


@pytest.mark.parametrize(
    ("module", "heavy"), [("infra.data_lake", "pulumi"), ("handlers.serving.inference", "torch")]
)
def test_the_check_itself_sees_heavy_imports(module: str, heavy: str) -> None:
    # The boundary test above must be able to fail: these modules do load their heavy stack.
    assert heavy in imported_after(module)
