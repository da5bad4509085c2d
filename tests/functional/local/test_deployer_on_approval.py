"""Through the emulator, as in AWS: approving a version (plain boto3 UpdateModelPackage) emits
SageMaker's event, EventBridge's rule delivers it to the deployer Lambda's real handler, which
deploys; the endpoint's state changes run its verification; the loop's watcher reports the outcome.

One emulator for the module (moto's server in this process with the hosting, events and
autoscaling extensions), the dev stack applied from its plan, the deployer running in its own
processes; model servers are faked (real ones serve in test_local_up.py).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulator import autoscaling, events, hosting
from emulator.aws_endpoint import EmulatedAws
from emulator.clients import emulator_client
from emulator.invocations import INVOCATIONS_FILE, InvocationRecord, read_invocations
from emulator.lambdas import LocalLambdaRuntime
from emulator.provision import LocalApplier
from handlers.common.contracts import SERVING_FILES
from handlers.deployer.plan import ENDPOINT_EVENT, MODEL_PACKAGE_EVENT, TAG_VERIFIED
from handlers.registry.client import ModelRegistry, ModelVersion
from infra.offline import Plan, run_offline
from mlctl.local.deployer_watch import DeployerError, DeployerWatch

REGION = "us-east-1"
ACCOUNT = "123456789012"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-cpu-py311"
SERVICES = ("s3", "kms", "sagemaker", "sns", "iam", "lambda", "events")
WAIT_S = 120.0


class FakeProcess:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeContainer:
    """A model server that is always healthy (the route records which model it serves)."""

    model_name: str
    url: str
    process: FakeProcess = field(default_factory=FakeProcess)

    def stop(self) -> None:
        pass


BROKEN_RUN = "run-4"  # the training run whose model server never comes up


def start_fake_container(model_name: str, model_dir: Path, *_: Any) -> FakeContainer:
    """A healthy model server, except for the broken run's."""
    if model_dir.name == BROKEN_RUN:
        raise hosting.ContainerStartError(f"the model server for {model_name} exited with 3: bad weights")
    return FakeContainer(model_name, f"http://127.0.0.1/{model_name}")


@dataclass
class Platform:
    url: str
    plan: Plan
    log_dir: Path
    routes: list[Any]

    def client(self, service: str) -> Any:
        return emulator_client(service, REGION, self.url)

    @property
    def deployer(self) -> str:
        return str(self.plan.outputs["deployerFunctionName"])

    @property
    def endpoint(self) -> str:
        return str(self.plan.outputs["endpointName"])

    def records(self) -> list[InvocationRecord]:
        return [r for r in read_invocations(self.log_dir / INVOCATIONS_FILE) if r.function == self.deployer]

    def watch(self) -> DeployerWatch:
        return DeployerWatch(
            self.client("sagemaker"),
            self.client("s3"),
            self.log_dir / INVOCATIONS_FILE,
            self.deployer,
            self.endpoint,
        )

    def register(self, run: int, accuracy: float) -> ModelVersion:
        """A version as the pipeline registers it: artifact, evaluation report and serving files."""
        s3, bucket = self.client("s3"), self.plan.outputs["bucketNames"]["artifacts"]
        folder = f"pipelines/run-{run}/evaluation"
        s3.put_object(Bucket=bucket, Key=f"pipelines/run-{run}/model.tar.gz", Body=b"weights")
        files = {"evaluation.json": {"metrics": {"accuracy": {"value": accuracy}}}, **serving_files(run)}
        for name, document in files.items():
            s3.put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=json.dumps(document).encode())
        return ModelRegistry(self.client("sagemaker")).register(
            str(self.plan.outputs["modelPackageGroupName"]),
            f"s3://{bucket}/pipelines/run-{run}/model.tar.gz",
            IMAGE,
            metrics={"accuracy": accuracy},
            evaluation_report_uri=f"s3://{bucket}/{folder}/evaluation.json",
        )


def status(record: InvocationRecord) -> str | None:
    """The deployer's answer's status; None for an attempt that failed."""
    return record.result.get("status") if isinstance(record.result, dict) else None


def serving_files(run: int) -> dict[str, Any]:
    return {name: {"file": name, "run": run} for name in SERVING_FILES}


def approve_in_the_console(platform: Platform, version: ModelVersion) -> None:
    """A user's plain boto3 client, no champion gate: what the SageMaker console does."""
    sagemaker = boto3.client(
        "sagemaker",
        region_name=REGION,
        endpoint_url=platform.url,
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )
    sagemaker.update_model_package(
        ModelPackageArn=version.arn, ModelApprovalStatus="Approved", ApprovalDescription="looks good"
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    work = tmp_path_factory.mktemp("deployer-events")
    aws = EmulatedAws("127.0.0.1", 0)
    aws.start()
    # moto's backends are this process's: start from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{aws.url}/moto-api/reset", method="POST"), timeout=30)
    runtime = LocalLambdaRuntime(
        lambda service: emulator_client(service, REGION, aws.url),
        region=REGION,
        aws_url=aws.url,
        log_dir=work / "lambda",
        retry_delays=(0.0,),
    )
    bus = events.LocalEventBus(lambda: events.events_backend(ACCOUNT, REGION), runtime.invoke_async)
    # moto's classes are shared by the whole test session: every extension is undone below.
    undo = [hosting.extend_moto(bus.put), events.extend_moto(bus), autoscaling.extend_moto()]
    routes: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hosting, "start_container", start_fake_container)
        watcher = hosting.LocalHosting(
            lambda: hosting.sagemaker_backend(ACCOUNT, REGION),
            lambda uri, path: None,
            routes.append,
            work / "hosting",
            poll_s=0.05,
            emit=bus.put,
        )
        # A model's folder is named after its training run (the artifact's folder): nothing to extract.
        patch.setattr(watcher, "_model_dir", lambda name, url: work / url.rsplit("/", 2)[-2])
        watcher.start()
        try:
            plan = run_offline("dev")
            clients = {service: emulator_client(service, REGION, aws.url) for service in SERVICES}
            LocalApplier(clients, REGION).apply(plan)
            yield Platform(aws.url, plan, work / "lambda", routes)
        finally:
            runtime.stop()
            watcher.stop()
            for step in reversed(undo):
                step()
            aws.stop()


@pytest.fixture(scope="module")
def first(platform: Platform) -> ModelVersion:
    """Version 1 (accuracy 0.95), approved in the console; returned once the deployer verified it."""
    version = platform.register(run=1, accuracy=0.95)
    approve_in_the_console(platform, version)
    deadline = time.monotonic() + WAIT_S
    while not any(r.detail_type == ENDPOINT_EVENT and status(r) == "succeeded" for r in platform.records()):
        assert time.monotonic() < deadline, f"no verified deployment: {platform.records()}"
        threading.Event().wait(0.1)
    return version


def test_approving_a_version_runs_the_deployer_lambda_which_deploys_and_verifies_it(
    platform: Platform, first: ModelVersion
) -> None:
    records = platform.records()
    # THEN the deployer's handler ran on SageMaker's approval event for this version and created the endpoint
    approval = records[0]
    assert (approval.detail_type, approval.resources, approval.outcome) == (
        MODEL_PACKAGE_EVENT,
        (first.arn,),
        "succeeded",
    )
    assert approval.result["status"] == "created"
    config = approval.result["expected_config"]
    # AND the endpoint's state changes ran its verification, which succeeded on that config
    verifications = [r for r in records if r.detail_type == ENDPOINT_EVENT]
    assert [status(r) for r in verifications if status(r) != "duplicate"] == ["succeeded"]
    # AND the endpoint is InService on that config, which serves the version's artifact
    sagemaker = platform.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=platform.endpoint)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", config)
    model = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0][
        "ModelName"
    ]
    container = sagemaker.describe_model(ModelName=model)["PrimaryContainer"]
    assert container["ModelDataUrl"] == first.artifact_uri
    assert [variant.model_name for variant in platform.routes[-1].variants] == [model]
    # AND the deployer recorded the verified outcome, published the version's serving files and
    # registered the variant's autoscaling, all through the emulator's endpoint
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert tags[TAG_VERIFIED] == f"succeeded:{config}"
    s3, bucket = platform.client("s3"), platform.plan.outputs["bucketNames"]["artifacts"]
    for name, document in serving_files(run=1).items():
        assert json.loads(s3.get_object(Bucket=bucket, Key=f"serving/{name}")["Body"].read()) == document
    targets = platform.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )
    assert [t["ResourceId"] for t in targets["ScalableTargets"]] == [
        f"endpoint/{platform.endpoint}/variant/primary"
    ]


def test_a_worse_version_approved_in_the_console_is_refused_and_the_watch_says_why(
    platform: Platform, first: ModelVersion
) -> None:
    # GIVEN version 2, worse than the served version 1 beyond the margin
    worse = platform.register(run=2, accuracy=0.80)
    served = platform.client("sagemaker").describe_endpoint(EndpointName=platform.endpoint)
    # WHEN it is approved without the champion gate
    approve_in_the_console(platform, worse)
    # THEN the loop's watch stops with the deployer's own reason and where its log is
    with pytest.raises(DeployerError) as refused:
        platform.watch().wait(worse, WAIT_S)
    message = str(refused.value)
    assert f"the deployer refused {worse.label}" in message and "accuracy 0.95->0.8" in message
    assert str(platform.log_dir / f"{platform.deployer}.log") in message and "\n" not in message
    # AND the endpoint still serves version 1, and version 2 is rejected in the registry
    now = platform.client("sagemaker").describe_endpoint(EndpointName=platform.endpoint)
    assert now["EndpointConfigName"] == served["EndpointConfigName"]
    assert ModelRegistry(platform.client("sagemaker")).describe(worse.arn).status == "Rejected"


def test_a_better_version_is_updated_blue_green_and_the_watch_returns_it_verified(
    platform: Platform, first: ModelVersion
) -> None:
    # GIVEN version 3, better than version 1
    better = platform.register(run=3, accuracy=0.97)
    before = platform.client("sagemaker").describe_endpoint(EndpointName=platform.endpoint)
    # WHEN it is approved as the loop approves it (handlers.registry)
    approved = ModelRegistry(platform.client("sagemaker")).approve(better.arn, "better")
    deployed = platform.watch().wait(approved, WAIT_S)
    # THEN the deployer updated the endpoint to a new config, verified, with version 3's files published
    assert deployed.action == "updated" and deployed.config_name != before["EndpointConfigName"]
    endpoint = platform.client("sagemaker").describe_endpoint(EndpointName=platform.endpoint)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", deployed.config_name)
    s3, bucket = platform.client("s3"), platform.plan.outputs["bucketNames"]["artifacts"]
    schema = json.loads(s3.get_object(Bucket=bucket, Key=f"serving/{SERVING_FILES[0]}")["Body"].read())
    assert schema["run"] == 3


def test_a_rolled_back_deployment_is_reported_with_the_deployers_reason(
    platform: Platform, first: ModelVersion
) -> None:
    # GIVEN a version better on paper, whose model server will not start
    broken = platform.register(run=int(BROKEN_RUN.split("-")[1]), accuracy=0.98)
    before = platform.client("sagemaker").describe_endpoint(EndpointName=platform.endpoint)
    # WHEN it is approved
    approved = ModelRegistry(platform.client("sagemaker")).approve(broken.arn, "better")
    # THEN the update rolls back, the deployer's verification finds the deployment failed, and the
    # loop's watch stops with the deployer's reason on one line
    with pytest.raises(DeployerError) as failed:
        platform.watch().wait(approved, WAIT_S)
    message = str(failed.value)
    assert "DeploymentFailedError" in message and "bad weights" in message and "\n" not in message
    # AND the endpoint still serves the config it had, marked failed for the new one
    endpoint = platform.client("sagemaker").describe_endpoint(EndpointName=platform.endpoint)
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == (
        "InService",
        before["EndpointConfigName"],
    )
