"""Bring your own model, end to end on the local platform: a TorchScript model written here is
registered -> approved -> deployed by the deployer Lambda -> answers through SageMaker Runtime and
the prediction API.

The platform is local mode's own (``local_up(..., platform_only=True)``: the stack's resources in
the emulator, the API and the deployer, nothing trained); every step is the ``mlctl`` command line.
One registration and deployment for the module; the tests read what it left and call it over HTTP.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from emulator.clients import emulator_client
from emulator.invocations import INVOCATIONS_FILE
from emulator.server import lambda_log_dir
from handlers.common.contracts import INPUT_SCHEMA_KEY
from handlers.registry.client import ModelRegistry, ModelVersion
from mlctl import cli
from mlctl.local.commands import local_up, stop_platform
from mlctl.local.deployer_watch import DeployerWatch
from mlctl.local.state import STATE_FILE, LocalState
from mlctl.local.workflow import post_json

STACK = "dev"
FEATURES = ["temperature", "vibration", "pressure", "current"]
SCHEMA = {"kind": "tabular", "feature_names": FEATURES}
BASELINE: dict[str, Any] = {
    "format": "ml-platform/baseline/v1",
    "feature_names": FEATURES,
    "features": {},
    "confidence": None,
}
ROWS = [[0.5, 1.2, -0.3, 0.1], [-1.0, 0.0, 2.0, 0.7]]


@dataclass
class Deployed:
    state: LocalState
    model: torch.nn.Module
    version: str

    def client(self, service: str) -> Any:
        return emulator_client(service, self.state.region, self.state.aws_endpoint_url)

    def registered(self) -> ModelVersion:
        group = str(self.state.outputs["modelPackageGroupName"])
        return ModelRegistry(self.client("sagemaker")).describe(group, int(self.version))

    def watch(self, state_dir: Path) -> DeployerWatch:
        """Local mode's own watch over the deployer Lambda's invocations."""
        outputs = self.state.outputs
        return DeployerWatch(
            self.client("sagemaker"),
            self.client("s3"),
            lambda_log_dir(state_dir) / INVOCATIONS_FILE,
            str(outputs["deployerFunctionName"]),
            str(outputs["endpointName"]),
        )

    def expected(self, rows: list[list[float]]) -> list[list[float]]:
        with torch.no_grad():
            return [[float(v) for v in row] for row in self.model(torch.tensor(rows)).tolist()]


def mlctl(state_dir: Path, *argv: str) -> str:
    """``mlctl <argv> --local``; its stdout, or a failed assertion with its one-line error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--local", "--state-file", str(state_dir / STATE_FILE)])
    assert code == 0, f"mlctl {' '.join(argv[:2])}: {err.getvalue()}"
    return out.getvalue()


def sensor_model() -> torch.nn.Module:
    torch.manual_seed(5)
    return torch.nn.Sequential(
        torch.nn.Linear(len(FEATURES), 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).eval()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    state_dir, files = tmp_path_factory.mktemp("mlctl-local"), tmp_path_factory.mktemp("byom")
    # GIVEN a model trained elsewhere, saved as TorchScript, with its report, input schema and baseline
    model = sensor_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(files / "sensors.pt"))
    report = {"metrics": {"accuracy": {"value": 0.93, "direction": "higher"}}, "samples": 400}
    (files / "evaluation.json").write_text(json.dumps(report))
    (files / "input-schema.json").write_text(json.dumps(SCHEMA))
    (files / "baseline.json").write_text(json.dumps(BASELINE))
    try:
        state = local_up(STACK, state_dir, manual_approval=False, epochs=1, platform_only=True)
        # WHEN it is registered, approved, and its deployment awaited
        options = ["--metrics", str(files / "evaluation.json"), "--baseline", str(files / "baseline.json")]
        options += ["--input-schema", str(files / "input-schema.json")]
        version = mlctl(state_dir, "models", "register", str(files / "sensors.pt"), *options).strip()
        mlctl(state_dir, "models", "approve", version, "--reason", "trained on the lab cluster")
        wait = ["--model-version", version, "--timeout", "300", "--poll", "1", "--no-smoke"]
        mlctl(state_dir, "deploy", "wait", *wait)
        deployed = Deployed(state, model, version)
        # the deployer's verification follows InService: it publishes the version's serving files
        # (the watch checks they are this version's)
        deployed.watch(state_dir).wait(deployed.registered(), timeout_s=120)
        yield deployed
    finally:
        stop_platform(state_dir, quiet=True)


def test_the_endpoint_serves_the_registered_model(deployed: Deployed) -> None:
    # THEN the endpoint (SageMaker Runtime, the deployer's model server) answers with the model's outputs
    answer = deployed.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=str(deployed.state.outputs["endpointName"]),
        ContentType="application/json",
        Body=json.dumps({"instances": ROWS}),
    )
    rows = json.loads(answer["Body"].read())
    assert all(
        row == pytest.approx(want, abs=1e-5) for row, want in zip(rows, deployed.expected(ROWS), strict=True)
    )
    # AND the deployer published the version's input schema where the prediction API reads it
    bucket = deployed.state.outputs["bucketNames"]["artifacts"]
    published = deployed.client("s3").get_object(Bucket=bucket, Key=INPUT_SCHEMA_KEY)["Body"].read()
    assert json.loads(published) == SCHEMA


def test_the_api_refuses_a_request_the_registered_schema_refuses(deployed: Deployed) -> None:
    status, body = post_json(
        f"{deployed.state.api_url}/v1/predict", {"instances": [[1.0, 2.0]]}, deployed.state.api_key
    )
    assert status == 400, body
    assert "4 features" in json.dumps(body)


def test_predictions_of_the_registered_model_come_back_over_the_api(deployed: Deployed) -> None:
    # WHEN a client sends rows the registered schema accepts
    status, body = post_json(
        f"{deployed.state.api_url}/v1/predict", {"instances": ROWS}, deployed.state.api_key
    )
    # THEN the API answers with the model's own outputs (its answer passed on as the model gave it)
    assert status == 200, body
    assert all(
        row == pytest.approx(want, abs=1e-5) for row, want in zip(body, deployed.expected(ROWS), strict=True)
    )
