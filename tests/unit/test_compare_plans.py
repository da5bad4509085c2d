"""scripts/compare_plans.py: what it lets through as expected, and what it reports as a difference."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_plans.py"
_spec = importlib.util.spec_from_file_location("compare_plans", SCRIPT)
assert _spec is not None and _spec.loader is not None
compare_plans = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_plans)

ROOT = "urn:pulumi:dev::ml-platform::"
FUNCTION = "aws:lambda/function:Function"


def resource(name: str, type_: str, parent: str, **inputs: Any) -> dict[str, Any]:
    urn = f"{ROOT}{parent}${type_}::{name}"
    return {"type": type_, "name": name, "urn": urn, "aliases": [], "inputs": inputs}


@pytest.fixture
def base() -> dict[str, Any]:
    function = resource(
        "api-fn",
        FUNCTION,
        "mlplatform:index:PredictionApi",
        handler="handlers.a.lambda_handler",
        sourceCodeHash="abc=",
        code="<pulumi.asset.FileArchive object at 0x7f00>",
        memorySize=512,
    )
    bundle = resource(
        "code",
        "aws:s3/bucketObjectv2:BucketObjectv2",
        "mlplatform:index:TrainingPipeline",
        key="code/training/0123456789abcdef/sourcedir.tar.gz",
    )
    return {"outputs": {"apiUrl": "https://x"}, "resources": [function, bundle]}


def test_code_hashes_handler_moves_and_aliased_moves_are_expected(base: dict[str, Any]) -> None:
    # GIVEN the same plan after a refactoring: new code hashes, a moved handler module, and the
    # function declared under another component with an alias to its old URN
    new = copy.deepcopy(base)
    function = new["resources"][0]
    old_urn = function["urn"]
    function["urn"] = f"{ROOT}mlplatform:index:Other${FUNCTION}::api-fn"
    function["aliases"] = [old_urn]
    function["inputs"].update(handler="handlers.b.handler.lambda_handler", sourceCodeHash="xyz=",
                              code="<pulumi.asset.FileArchive object at 0x7f99>")  # fmt: skip
    new["resources"][1]["inputs"]["key"] = "code/training/fedcba9876543210/sourcedir.tar.gz"
    # WHEN they are compared
    differences, notes = compare_plans.compare(base, new)
    # THEN nothing differs, and the move and the handler are reported as expected changes
    assert differences == []
    assert any("moved with an alias" in note for note in notes)
    assert any("handlers.a.lambda_handler -> handlers.b.handler.lambda_handler" in note for note in notes)


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (lambda plan: plan["resources"][0]["inputs"].update(memorySize=1024), "api-fn.memorySize"),
        (lambda plan: plan["resources"].pop(1), "gone: aws:s3/bucketObjectv2:BucketObjectv2 code"),
        (lambda plan: plan["resources"][0].update(urn=f"{ROOT}x${FUNCTION}::api-fn"), "would be replaced"),
        (lambda plan: plan["resources"].append(resource("extra", FUNCTION, "y")), "new: " + FUNCTION),
        (lambda plan: plan["outputs"].update(apiUrl="https://y"), "stack outputs differ"),
    ],
    ids=["input", "gone", "moved-without-alias", "new-cloud-resource", "outputs"],
)
def test_every_other_change_is_a_difference(base: dict[str, Any], change: Any, reported: str) -> None:
    new = copy.deepcopy(base)
    change(new)
    differences, _ = compare_plans.compare(base, new)
    assert any(reported in line for line in differences), differences
