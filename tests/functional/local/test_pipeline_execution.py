"""The emulator executes the pipeline definition the Pulumi program deploys, and nothing else.

One emulator (moto's server in this process, with the pipeline and hosting extensions) holds the
dev stack as ``emulator.provision`` creates it from the plan; executions are started and followed
with ``mlctl train``'s own calls. Changing the program (a stack setting) and updating the pipeline,
as ``pulumi up`` would, changes what the next execution does.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from emulator import hosting, pipeline_executions
from emulator.clients import emulator_client
from emulator.provision import AppliedStack, LocalApplier
from handlers.common.contracts import recorded_directions
from handlers.common.instance_types import has_gpu
from handlers.common.s3_uri import S3Uri
from handlers.registry import champion
from handlers.registry.client import ModelRegistry, ModelVersion
from infra.images import image_tag
from infra.offline import Plan, run_offline
from infra.stack_config import load_stack_config, read_stack_values
from mlctl.train import PipelineOutcome, follow_execution, list_steps, start_training
from training_jobs import datasets

STACK = "dev"
REGION = "us-east-1"
EPOCHS = 3  # enough for the dev gate (accuracy >= 0.85) on digits


@dataclass
class Emulator:
    url: str
    plan: Plan
    applied: AppliedStack | None = None  # how the plan's identifiers map to the emulator's

    def client(self, service: str) -> Any:
        return emulator_client(service, REGION, self.url)

    @property
    def pipeline(self) -> str:
        return str(self.plan.outputs["trainingPipelineName"])

    def execute(self, epochs: int = EPOCHS) -> PipelineOutcome:
        sagemaker = self.client("sagemaker")
        arn = start_training(sagemaker, self.pipeline, epochs=epochs)
        return follow_execution(sagemaker, arn, poll_seconds=0.5, timeout_seconds=600, say=lambda _: None)

    def steps(self, outcome: PipelineOutcome) -> dict[str, dict[str, Any]]:
        return {str(s["StepName"]): s for s in list_steps(self.client("sagemaker"), outcome.arn)}

    def registered(self, outcome: PipelineOutcome) -> ModelVersion:
        arn = self.steps(outcome)["RegisterModel"]["Metadata"]["RegisterModel"]["Arn"]
        return ModelRegistry(self.client("sagemaker")).describe(arn)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    work = tmp_path_factory.mktemp("pipelines")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    runner = pipeline_executions.PipelineRunner(lambda service: emulator_client(service, REGION, url), work)
    # moto's classes are shared by the whole test session: both extensions are undone below.
    undo = [hosting.extend_moto(), pipeline_executions.extend_moto(runner.start)]
    try:
        emulator = Emulator(url, run_offline(STACK))
        clients = {service: emulator.client(service) for service in ("s3", "kms", "sagemaker", "sns")}
        emulator.applied = LocalApplier(clients, REGION).apply(emulator.plan)
        raw = datasets.write_raw("digits", Path(tempfile.mkdtemp(dir=work)))
        bucket = emulator.plan.outputs["bucketNames"]["raw"]
        emulator.client("s3").upload_file(str(raw), bucket, f"raw/batch-1/{raw.name}")
        yield emulator
    finally:
        for step in reversed(undo):
            step()
        server.stop()


@pytest.fixture(scope="module")
def first(emulator: Emulator) -> PipelineOutcome:
    return emulator.execute()


def test_an_execution_runs_every_step_of_the_deployed_definition(
    emulator: Emulator, first: PipelineOutcome
) -> None:
    # GIVEN an execution of the pipeline the plan declares, started as `mlctl train` starts it
    # THEN it succeeded, each step ran as the definition orders them, and each says what it ran
    assert (first.status, first.failure_reason) == ("Succeeded", None)
    steps = emulator.steps(first)
    assert list(steps) == ["Prepare", "Train", "Evaluate", "CheckEvaluation", "RegisterModel"]
    assert {s["StepStatus"] for s in steps.values()} == {"Succeeded"}
    assert steps["CheckEvaluation"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    job = steps["Train"]["Metadata"]["TrainingJob"]["Arn"].rsplit("/", 1)[1]
    described = emulator.client("sagemaker").describe_training_job(TrainingJobName=job)
    # AND the training job ran the definition's hyperparameters in script mode: the built-in task is
    # the platform bundle's train.py, run by the toolkit as a team's entry point would be
    definition = json.loads(
        emulator.plan.of_type("aws:sagemaker/pipeline:Pipeline")[0].inputs["pipelineDefinition"]
    )
    train = next(s for s in definition["Steps"] if s["Name"] == "Train")["Arguments"]
    assert "ContainerEntrypoint" not in described["AlgorithmSpecification"]
    assert described["HyperParameters"] == {**train["HyperParameters"], "epochs": str(EPOCHS)}
    assert described["HyperParameters"]["sagemaker_program"] == "train.py"
    assert described["HyperParameters"]["task"] == "digits"


def test_the_registered_version_carries_the_evaluation_metrics_and_the_serving_image(
    emulator: Emulator, first: PipelineOutcome
) -> None:
    # GIVEN the version the execution registered and the evaluation.json its Evaluate step wrote
    version = emulator.registered(first)
    report_uri = S3Uri.parse(str(version.evaluation_report_uri))
    report = json.loads(
        emulator.client("s3").get_object(Bucket=report_uri.bucket, Key=report_uri.key)["Body"].read()
    )
    # THEN the registry holds every metric of the report (what the champion gates compare), the
    # dataset it was trained on and its training job
    assert version.metrics == {name: value["value"] for name, value in report["metrics"].items()}
    # AND which way each is better, as the report states it
    assert recorded_directions(version.customer_metadata) == {
        name: value["direction"] == "higher" for name, value in report["metrics"].items()
    }
    assert recorded_directions(version.customer_metadata)["accuracy"] is True
    assert version.dataset_version == report["dataset_version"]
    assert (
        version.training_job
        == emulator.steps(first)["Train"]["Metadata"]["TrainingJob"]["Arn"].rsplit("/", 1)[1]
    )
    assert version.status == "PendingManualApproval"
    # AND its image is the platform's model server image for the stack's serving instance family
    # (dev serves on CPU), under this checkout's tag, with the stack's precision
    serving = load_stack_config(STACK).serving.instance_type
    assert not has_gpu(serving)
    assert str(version.image_uri).endswith(f"/mlp-{STACK}/serving-cpu:{image_tag('cpu')}")
    assert version.environment == {"MODEL_SERVER_PRECISION": "float32"}


def test_the_champion_gate_compares_two_versions_the_pipeline_registered(
    emulator: Emulator, first: PipelineOutcome
) -> None:
    # GIVEN a second execution on the same data, trained longer
    second = emulator.execute(epochs=EPOCHS + 1)
    champion_version, challenger_version = emulator.registered(first), emulator.registered(second)
    # WHEN the champion gate compares them on what the pipeline registered
    decision = champion.compare(champion_version.metrics, challenger_version.metrics, margin=0.02)
    # THEN it compares every metric both report, rather than refusing for want of a shared one
    assert {check.name for check in decision.checks} == {"accuracy", "precision", "recall", "f1"}
    assert "no shared metric" not in decision.reason


def test_a_change_in_the_program_changes_what_the_next_execution_does(emulator: Emulator) -> None:
    # GIVEN the program with another evaluation threshold, its pipeline updated as `pulumi up` does
    values = read_stack_values(STACK)
    values["ml-platform:training"] = {**values["ml-platform:training"], "evaluationThreshold": 0.999}
    changed = run_offline(STACK, values)
    (pipeline,) = changed.of_type("aws:sagemaker/pipeline:Pipeline")
    registry = emulator.client("sagemaker")
    before = len(
        registry.list_model_packages(ModelPackageGroupName=changed.outputs["modelPackageGroupName"])[
            "ModelPackageSummaryList"
        ]
    )
    assert emulator.applied is not None
    definition = emulator.applied.resolve(json.loads(pipeline.inputs["pipelineDefinition"]))
    registry.update_pipeline(PipelineName=emulator.pipeline, PipelineDefinition=json.dumps(definition))
    # WHEN the pipeline runs again, with nothing else changed
    outcome = emulator.execute()
    # THEN the condition follows the new threshold: the Fail step names it and nothing is registered
    steps = emulator.steps(outcome)
    assert outcome.status == "Failed" and outcome.failed_step == "Fail"
    assert steps["CheckEvaluation"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert "0.999" in str(outcome.failure_reason) and "accuracy" in str(outcome.failure_reason)
    assert "RegisterModel" not in steps
    after = registry.list_model_packages(ModelPackageGroupName=changed.outputs["modelPackageGroupName"])
    assert len(after["ModelPackageSummaryList"]) == before
