"""Example (a) of "Bring your own model", end to end on this machine: a team's churn CSV, its own
script-mode train.py and evaluate.py (examples/tabular-classifier), through the executed pipeline,
the gates, the deployer, the HTTPS API and the drift check (`mlctl local up --stack example-churn`).

One module-scoped platform, the loop run twice: the second run's champion gate compares the new
version with the served one through the team's own evaluation script.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from emulator.clients import emulator_client
from handlers.common.contracts import recorded_directions
from handlers.common.s3_uri import S3Uri
from handlers.registry.client import ModelRegistry
from infra.stack_config import load_stack_config, project_root
from mlctl.local.commands import local_up, stop_platform
from mlctl.local.state import LocalState
from mlctl.local.workflow import post_json

STACK = "example-churn"
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract"]


@dataclass
class Platform:
    state: LocalState

    def client(self, service: str) -> Any:
        return emulator_client(service, self.state.region, self.state.aws_endpoint_url)

    def versions(self) -> list[Any]:
        registry = ModelRegistry(self.client("sagemaker"))
        return sorted(
            registry.list_versions(self.state.outputs["modelPackageGroupName"]), key=lambda v: v.version
        )

    def read(self, uri: str) -> Any:
        location = S3Uri.parse(uri)
        return json.loads(
            self.client("s3").get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state_dir = tmp_path_factory.mktemp("team-example")
    try:
        local_up(STACK, state_dir, manual_approval=False, epochs=None)
        state = local_up(STACK, state_dir, manual_approval=False, epochs=None)  # the same data again
        yield Platform(state)
    finally:
        stop_platform(state_dir, quiet=True)


def test_the_teams_train_py_ran_in_script_mode_with_its_hyperparameters(platform: Platform) -> None:
    sagemaker = platform.client("sagemaker")
    (job,) = [
        j
        for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
        if j["TrainingJobStatus"] == "Completed"
    ][:1]
    described = sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"])
    hyperparameters = described["HyperParameters"]
    # THEN the team's entry point ran from the team's bundle, with the stack's hyperparameters
    # (40 epochs: the configured value, not the built-in tasks' quick default)
    assert hyperparameters["sagemaker_program"] == "train.py"
    assert {k: hyperparameters[k] for k in ("epochs", "learning-rate")} == {
        "epochs": "40",
        "learning-rate": "0.01",
    }
    code = next(c for c in described["InputDataConfig"] if c["ChannelName"] == "code")
    bundle = platform.state.outputs["bucketNames"]["artifacts"]
    assert code["DataSource"]["S3DataSource"]["S3Uri"].startswith(f"s3://{bundle}/code/training/")
    # AND what it wrote is the team's model folder (TorchScript, labels, its inference code)
    model = ModelRegistry(sagemaker).describe(platform.versions()[0].arn)
    assert model.artifact_uri is not None and model.artifact_uri.endswith("/output/model.tar.gz")


def test_the_gate_and_registration_read_the_teams_evaluation_json(platform: Platform) -> None:
    first = platform.versions()[0]
    report = platform.read(str(first.evaluation_report_uri))
    # THEN the report is the team's (its own metrics, with their directions), and the version
    # records the gate's metric and direction from it
    assert set(report["metrics"]) == {"accuracy", "macro_f1"}
    assert first.metrics == {"accuracy": report["metrics"]["accuracy"]["value"]}
    assert recorded_directions(first.customer_metadata) == {"accuracy": True}
    threshold = load_stack_config(STACK).training.evaluation_threshold
    assert first.metrics["accuracy"] >= threshold
    # AND the dataset version comes from the generic preparer's manifest
    assert first.dataset_version and len(first.dataset_version) == 64


def test_the_champion_gate_compared_version_2_through_the_teams_evaluation(platform: Platform) -> None:
    first, second = platform.versions()[:2]
    decision = second.customer_metadata
    # THEN version 2 (the same rows again: the same splits) was compared with version 1 and promoted
    assert decision["comparison.decision"] == "promote"
    assert decision["comparison.champion"] == first.label
    assert "accuracy" in decision["comparison.metrics"]
    # AND both trained on the same dataset version: stable splits, the same records in each
    assert first.dataset_version == second.dataset_version


def test_the_api_serves_the_teams_model_by_feature_name_and_category(platform: Platform) -> None:
    customer = {"tenure_months": 2, "monthly_charges": 110.5, "support_calls": 6, "contract": "monthly"}
    status, body = post_json(
        f"{platform.state.api_url}/v1/predict", {"instances": [customer]}, platform.state.api_key
    )
    assert status == 200, body
    assert body["predictions"] == ["yes"]  # a new, expensive, unhappy monthly customer churns
    # AND a category the model never saw is the caller's mistake, named, never a 5xx
    unknown = {**customer, "contract": "weekly"}
    status, body = post_json(
        f"{platform.state.api_url}/v1/predict", {"instances": [unknown]}, platform.state.api_key
    )
    assert status == 400 and "contract" in json.dumps(body)


def test_drift_runs_on_the_teams_features(platform: Platform) -> None:
    from handlers.monitoring.handler import check_drift
    from handlers.monitoring.settings import DriftSettings

    (function,) = [
        f
        for f in platform.client("lambda").list_functions()["Functions"]
        if f["FunctionName"].endswith("drift-monitor")
    ]
    environment = function["Environment"]["Variables"]
    client = platform.client
    report = check_drift(
        DriftSettings.from_env({**environment, "WINDOW_HOURS": "1"}),
        now=datetime.now(UTC),
        s3=client("s3"),
        cloudwatch=client("cloudwatch"),
        sagemaker=client("sagemaker"),
        sns=client("sns"),
    )
    (variant,) = report.variants
    assert variant.captured_records > 0
    assert [feature.name for feature in variant.features] == FEATURES


def test_the_example_imports_nothing_of_the_platform() -> None:
    folder = project_root() / "examples"
    platform_packages = ("training_jobs", "models", "handlers", "infra", "mlctl", "emulator")
    for script in folder.rglob("*.py"):
        for line in script.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in platform_packages, f"{script}: {line}"


def test_the_sample_rows_the_preparer_quarantined_are_named(platform: Platform) -> None:
    sample = project_root() / "examples/tabular-classifier/data/churn.csv"
    with sample.open(newline="") as handle:
        rows = len(list(csv.DictReader(handle)))
    s3 = platform.client("s3")
    bucket = platform.state.outputs["bucketNames"]["processed"]
    manifests = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
        if item["Key"].endswith("manifest.json")
    ]
    runs = sorted(
        (json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["rows"] for key in manifests),
        key=lambda counts: counts["read"],
    )
    # THEN every row of the first run is accounted for: kept, or dropped with its reason (the
    # sample breaks three on purpose), and the second run's copy of the same rows adds none
    first, second = runs
    assert first["read"] == rows == first["kept"] + sum(first["dropped"].values())
    assert {"missing_value", "not_a_number", "duplicate"} <= set(first["dropped"])
    assert second["read"] == 2 * rows and second["kept"] == first["kept"]
