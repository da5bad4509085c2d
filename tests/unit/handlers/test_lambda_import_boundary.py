"""Lambda code never loads torch or pulumi (nor the SageMaker SDK): checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.packaging import HANDLER_ENTRYPOINTS

REPO = Path(__file__).resolve().parents[3]
FORBIDDEN = {"torch", "pulumi", "pulumi_aws", "sagemaker"}
LAMBDA_MODULES = sorted(
    {entry.rsplit(".", 1)[0] for entry in HANDLER_ENTRYPOINTS.values()} | {"handlers.packaging"}
)


def loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, timeout=60
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", LAMBDA_MODULES)
def test_lambda_modules_do_not_import_heavy_runtimes(module: str) -> None:
    # GIVEN a fresh interpreter WHEN the Lambda module is imported THEN no heavy runtime is loaded
    loaded = loaded_after_import(module)
    assert module.split(".", maxsplit=1)[0] in loaded
    assert not loaded & FORBIDDEN, f"{module} loads {sorted(loaded & FORBIDDEN)}"


def test_the_check_sees_a_heavy_import() -> None:
    # The serving handler runs in the model container and does load torch: the check must see it.
    assert "torch" in loaded_after_import("handlers.inference")
