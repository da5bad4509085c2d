"""What the pipeline definition imports stays torch-free; training code never pulls in Pulumi."""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # The pipeline definition reads METRIC_DEFINITIONS and the evaluation JSON paths.
        ("training_jobs.metrics", {"torch", "numpy", "pulumi", "sagemaker"}),
        ("training_jobs.evaluation_report", {"torch", "numpy", "pulumi", "sagemaker"}),
        # prepare runs in a processing container that needs no deep-learning stack.
        ("training_jobs.prepare", {"torch", "sklearn", "pulumi", "sagemaker"}),
        ("training_jobs.train", {"pulumi", "pulumi_aws", "sagemaker", "sklearn", "boto3"}),
        ("training_jobs.evaluate", {"pulumi", "pulumi_aws", "sagemaker", "sklearn"}),
        ("handlers.inference", {"pulumi", "sagemaker", "training_jobs", "boto3", "pydantic"}),
    ],
)
def test_module_imports_stay_within_its_runtime(module, forbidden):
    # GIVEN a fresh interpreter WHEN the module is imported THEN no forbidden stack comes with it
    loaded = imported_after(module)
    assert loaded.isdisjoint(forbidden), sorted(loaded & forbidden)


def test_the_boundary_check_can_see_torch():
    # The check above must be able to fail: the trainer does load torch.
    assert "torch" in imported_after("training_jobs.trainer")
