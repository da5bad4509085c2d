"""The code every function runs: one deterministic handlers zip and one cached powertools layer."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import infra.lambda_code
import infra.offline
from infra.lambda_code import powertools_layer_zip, source_code_hash
from infra.lambda_package import Artifact
from infra.offline import Plan, PlannedResource, run_offline
from tests.infra.conftest import PUBLIC_LAYER, cached_plan


@pytest.fixture(params=["dev", "prod"], scope="module")
def plan(request: pytest.FixtureRequest) -> Plan:
    return cached_plan(request.param)


def functions(plan: Plan) -> list[PlannedResource]:
    return plan.of_type("aws:lambda/function:Function")


# --- the handlers zip --------------------------------------------------------------------------------


def test_every_function_deploys_the_one_handlers_zip_with_its_hash(plan: Plan) -> None:
    deployed = functions(plan)
    assert len(deployed) == 3  # the API, the deployer and the drift monitor
    for function in deployed:
        inputs = function.inputs
        assert inputs["code"].path.endswith("build/lambda/handlers.zip")
        assert inputs["sourceCodeHash"] == source_code_hash(Path(inputs["code"].path))


def test_an_unchanged_handlers_zip_gets_the_same_hash_in_every_plan(tmp_path: Path) -> None:
    # GIVEN the zips two plans in one process deploy (the second is built with pulumi, a whole
    # program and its objects loaded), and the same sources built by a fresh interpreter
    planned = {
        function.inputs["sourceCodeHash"]
        for stack in ("dev", "prod")
        for function in functions(run_offline(stack))
    }
    subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from infra import lambda_package; "
         "lambda_package.build_handlers_zip(Path(sys.argv[1]))", str(tmp_path)],
        check=True, cwd=infra.offline.project_root(),
    )  # fmt: skip
    # THEN the hashes agree: a `pulumi up` with no code change updates no function
    assert planned == {source_code_hash(tmp_path / "handlers.zip")}


# --- the powertools layer ----------------------------------------------------------------------------


def test_without_a_layer_arn_the_cached_layer_zip_is_published(fake_layer_cache: Path) -> None:
    plan = cached_plan("dev")
    layer = plan.named("api-powertools-layer").inputs
    assert Path(layer["code"].path).parent == fake_layer_cache
    assert layer["compatibleRuntimes"] == ["python3.11"]
    assert layer["compatibleArchitectures"] == ["x86_64"]
    layer_arn = plan.named("api-powertools-layer").outputs["arn"]
    for function in functions(plan):
        assert function.inputs["layers"] == [layer_arn], function.name


def test_the_layer_aliases_the_urn_it_had_under_the_api_component(plan: Plan) -> None:
    # GIVEN the layer, first declared by the API component, now declared at the stack's root
    layer = plan.named("api-powertools-layer")
    old_parent = "mlplatform:index:PredictionApi"
    old_urn = f"urn:pulumi:{plan.stack}::ml-platform::{old_parent}${layer.type}::{layer.name}"
    # THEN it names its old URN as an alias: `pulumi up` moves its state and replaces nothing
    assert layer.urn != old_urn
    assert old_urn in layer.aliases


def test_a_configured_layer_arn_is_used_and_nothing_is_built(public_layer_plan: Plan) -> None:
    plan = public_layer_plan
    assert plan.of_type("aws:lambda/layerVersion:LayerVersion") == []
    for function in functions(plan):
        assert function.inputs["layers"] == [PUBLIC_LAYER], function.name


def test_the_layer_zip_is_built_once_per_powertools_version(tmp_path: Path, monkeypatch) -> None:
    built: list[Path] = []

    def build(out_dir: Path, offline: bool = False) -> Artifact:
        built.append(out_dir)
        path = out_dir / "powertools-layer.zip"
        path.write_bytes(b"zip")
        return Artifact(path, 1, 3, 3, "downloaded")

    monkeypatch.setattr(infra.lambda_code, "build_layer_zip", build)
    first = powertools_layer_zip(tmp_path)
    second = powertools_layer_zip(tmp_path)
    assert first == second and first.read_bytes() == b"zip"
    assert importlib.metadata.version("aws-lambda-powertools") in first.name
    assert len(built) == 1
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # the scratch folder is gone


def test_a_cached_layer_of_the_layout_without_bytecode_is_not_reused(tmp_path: Path, monkeypatch) -> None:
    # GIVEN a zip cached by an earlier version of the build (no layout suffix: no bytecode inside)
    version = importlib.metadata.version("aws-lambda-powertools")
    (tmp_path / f"powertools-{version}-python3.11-x86_64.zip").write_bytes(b"old layout")

    def build(out_dir: Path, offline: bool = False) -> Artifact:
        (out_dir / "powertools-layer.zip").write_bytes(b"new layout")
        return Artifact(out_dir / "powertools-layer.zip", 1, 10, 10, "downloaded")

    monkeypatch.setattr(infra.lambda_code, "build_layer_zip", build)
    # WHEN the program asks for the layer THEN it is built again, not taken from the old cache
    assert powertools_layer_zip(tmp_path).read_bytes() == b"new layout"
