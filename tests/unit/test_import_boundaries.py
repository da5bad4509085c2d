"""Each runtime stays slim: code that runs in one place never imports another place's heavy stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "pulumi", "pulumi_aws", "sagemaker")


def imported_after(module: str) -> set[str]:
    """Top-level packages present after importing ``module`` in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("infra.stack_config", HEAVY),  # the CLI and local mode read config without Pulumi
        ("mlctl.cli", HEAVY),  # `mlctl --help` and non-plan commands stay fast
        ("infra.data_lake", ("torch",)),  # the Pulumi program never imports torch
        ("infra.training", ("torch",)),
        ("training_jobs.local_runner", ("torch", "pulumi")),
        ("training_jobs.sm_env", ("pulumi", "pulumi_aws", "sagemaker")),  # training never imports pulumi
    ],
)
def test_module_does_not_import_heavy_dependencies(module: str, forbidden: tuple[str, ...]) -> None:
    loaded = imported_after(module)
    assert loaded.isdisjoint(forbidden), f"{module} imports {sorted(loaded & set(forbidden))}"


def test_the_check_itself_sees_heavy_imports() -> None:
    # The boundary test above must be able to fail: the Pulumi program does load pulumi.
    assert "pulumi" in imported_after("infra.data_lake")
