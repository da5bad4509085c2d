"""Pulumi mock-runtime fixtures: the real program, run offline, with every resource recorded."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import infra.lambda_code
from infra.offline import Plan, PlannedResource, run_offline
from infra.stack_config import read_stack_values

_PLANS: dict[str, Plan] = {}


def fake_layer_zip(folder: Path) -> Path:
    """A stand-in for the powertools layer zip, named as the cache names the real one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / infra.lambda_code.cached_layer_name()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("python/aws_lambda_powertools/__init__.py", "")
    return path


@pytest.fixture(scope="session", autouse=True)
def fake_layer_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Plans publish a fake powertools layer: no plan in the tests reaches the package index.

    tests/policy registers this fixture too, and plans are cached for the session: both use one
    folder, so a plan made under either matches the folder the other's tests see."""
    folder = tmp_path_factory.getbasetemp() / "layer-cache"
    if not folder.is_dir():
        fake_layer_zip(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(infra.lambda_code, "LAYER_CACHE_DIR", folder)
        yield folder


def cached_plan(stack: str, overrides: Mapping[str, Any] | None = None) -> Plan:
    """Each distinct (stack, overrides) runs the program once per session; plans are read-only."""
    cache_key = json.dumps([stack, overrides or {}], sort_keys=True)
    if cache_key not in _PLANS:
        values = {**read_stack_values(stack), **(overrides or {})}
        _PLANS[cache_key] = run_offline(stack, values)
    return _PLANS[cache_key]


@pytest.fixture(scope="session")
def dev_plan() -> Plan:
    return cached_plan("dev")


@pytest.fixture(scope="session")
def prod_plan() -> Plan:
    return cached_plan("prod")


@pytest.fixture(params=["dev", "prod"], scope="session")
def stack_plan(request: pytest.FixtureRequest) -> Plan:
    """Each shipped stack in turn: a property must hold in every example stack."""
    return cached_plan(request.param)


@pytest.fixture
def plan_with() -> Callable[..., Plan]:
    """Run the dev stack with some config keys replaced: ``plan_with(**{"ml-platform:data": {...}})``."""

    def run(stack: str = "dev", **overrides: Any) -> Plan:
        return cached_plan(stack, overrides)

    return run


def attached_to(plan: Plan, type_: str, bucket: PlannedResource) -> PlannedResource:
    """The one resource of ``type_`` that configures ``bucket`` (matched on the bucket name)."""
    matches = [r for r in plan.of_type(type_) if r.inputs.get("bucket") == bucket.outputs["bucket"]]
    assert len(matches) == 1, f"expected one {type_} for {bucket.name}, found {len(matches)}"
    return matches[0]


def policy_document(resource: PlannedResource) -> Mapping[str, Any]:
    document = resource.inputs["policy"]
    return json.loads(document) if isinstance(document, str) else document


def function_statements(plan: Plan, function_key: str) -> list[dict[str, Any]]:
    """The statements of the inline policy of the function whose resources are named ``function_key``."""
    return list(policy_document(plan.named(f"{function_key}-policy"))["Statement"])


def as_list(value: Any) -> list[Any]:
    """An IAM ``Action`` or ``Resource``: one string or a list of them."""
    return value if isinstance(value, list) else [value]


PUBLIC_LAYER = "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python311-x86_64:27"


@pytest.fixture(scope="module")
def public_layer_plan() -> Plan:
    """The dev stack with the public powertools layer configured instead of our own."""
    values = read_stack_values("dev")
    return cached_plan(
        "dev", {"ml-platform:api": {**values["ml-platform:api"], "powertoolsLayerArn": PUBLIC_LAYER}}
    )
