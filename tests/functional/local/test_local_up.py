"""`mlctl local up`, end to end on CPU: the whole loop, then version 2 switched in blue/green
under continuous traffic, then `local down`.

One module-scoped platform (training twice is the slow part); the tests read what it left in the
emulated AWS and talk to it over HTTP like a user would.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from handlers.common.s3_uri import S3Uri
from mlctl.local.commands import local_up, stop_platform
from mlctl.local.state import LocalState, process_alive
from mlctl.local.workflow import emulator_client, post_json

STACK = "dev"
EPOCHS = 4  # reaches the dev gate (accuracy >= 0.85); 2 epochs do not
DIGIT_PIXELS = [0, 5, 10, 16] * 16  # one 8x8 grey-level image, values 0..16


@dataclass
class Platform:
    state: LocalState
    state_dir: Path

    def client(self, service: str) -> Any:
        return emulator_client(service, self.state.region, self.state.aws_endpoint_url)

    def predict(self, body: Any) -> tuple[int, Any]:
        return post_json(f"{self.state.api_url}/v1/predict", body, self.state.api_key)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state_dir = tmp_path_factory.mktemp("mlctl-local")
    try:
        state = local_up(STACK, state_dir, manual_approval=False, epochs=EPOCHS)
        yield Platform(state, state_dir)
    finally:
        stop_platform(state_dir, quiet=True)


def _sample_image() -> dict[str, str]:
    return {"b64": base64.b64encode(bytes(DIGIT_PIXELS)).decode()}


def test_the_loop_leaves_artifacts_an_approved_version_and_a_serving_endpoint(platform: Platform) -> None:
    names = platform.state.outputs
    s3, sagemaker = platform.client("s3"), platform.client("sagemaker")
    # THEN the trained model is in the artifacts bucket, as a training job leaves it
    artifacts = names["bucketNames"]["artifacts"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=artifacts, Prefix="models/").get("Contents", [])]
    assert any(key.endswith("/output/model.tar.gz") for key in keys)
    # AND the registry holds an Approved version of it
    versions = sagemaker.list_model_packages(ModelPackageGroupName=names["modelPackageGroupName"])
    statuses = [v["ModelApprovalStatus"] for v in versions["ModelPackageSummaryList"]]
    assert statuses == ["Approved"]
    # AND the endpoint is InService in the SageMaker API, on the config the deployer created
    endpoint = sagemaker.describe_endpoint(EndpointName=names["endpointName"])
    assert endpoint["EndpointStatus"] == "InService"
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert endpoint["EndpointConfigName"] == tags["ml-platform:expected-config"]


def test_predictions_come_back_over_http_through_the_lambda_handler(platform: Platform) -> None:
    # WHEN a client calls the API with its key
    status, body = platform.predict({"instances": [_sample_image()]})
    # THEN the API Lambda answers with the endpoint's prediction and confidence
    assert status == 200, body
    ((label,), (confidence,)) = body["predictions"], body["confidence"]
    assert label in {str(digit) for digit in range(10)} and 0.0 <= confidence <= 1.0
    # AND it names the registry version that answered (the deployer puts it in the container)
    assert body["model_version"] == "1"
    # AND without the key the gateway refuses before the handler runs
    status, _ = post_json(f"{platform.state.api_url}/v1/predict", {"instances": []}, "wrong-key")
    assert status == 403


def test_a_users_plain_boto3_client_invokes_the_local_endpoint(platform: Platform) -> None:
    runtime = boto3.client(
        "sagemaker-runtime",
        region_name=platform.state.region,
        endpoint_url=platform.state.runtime_url,
        aws_access_key_id="any",
        aws_secret_access_key="any",
    )
    answer = runtime.invoke_endpoint(
        EndpointName=platform.state.outputs["endpointName"],
        ContentType="application/json",
        Body=json.dumps({"instances": [DIGIT_PIXELS]}),
    )
    assert answer["InvokedProductionVariant"] == "primary"
    assert len(json.loads(answer["Body"].read())["predictions"]) == 1


def test_capture_files_are_written_and_drift_metrics_computed(platform: Platform) -> None:
    capture = S3Uri.parse(platform.state.outputs["dataCaptureUri"])
    listing = platform.client("s3").list_objects_v2(Bucket=capture.bucket, Prefix=capture.key)
    keys = [o["Key"] for o in listing["Contents"]]
    assert keys and all(key.endswith(".jsonl") for key in keys)
    metrics = platform.client("cloudwatch").list_metrics(Namespace="ml-platform")["Metrics"]
    drift_metrics = {m["MetricName"] for m in metrics}
    assert {"MeanConfidence", "MaxFeaturePSI"} <= drift_metrics, drift_metrics


def test_version_2_switches_in_blue_green_without_a_failed_request(platform: Platform) -> None:
    sagemaker = platform.client("sagemaker")
    endpoint_name = platform.state.outputs["endpointName"]
    before = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    failures: list[Any] = []
    answered = [0]
    stop = threading.Event()
    body = {"instances": [_sample_image()]}

    def keep_calling() -> None:
        while not stop.is_set():
            status, answer = platform.predict(body)
            if status != 200:
                failures.append((status, answer))
            answered[0] += 1

    callers = [threading.Thread(target=keep_calling, daemon=True) for _ in range(3)]
    for caller in callers:
        caller.start()
    try:
        # WHEN a second `up` brings new data while clients keep calling
        state = local_up(STACK, platform.state_dir, manual_approval=False, epochs=EPOCHS)
    finally:
        stop.set()
        for caller in callers:
            caller.join(30)
    # THEN version 2 is registered, approved and served on a new config
    assert state.versions == [1, 2]
    after = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] != before
    # AND the champion gate compared it with version 1 and recorded its decision in the registry
    (latest, *_) = sagemaker.list_model_packages(
        ModelPackageGroupName=platform.state.outputs["modelPackageGroupName"], SortOrder="Descending"
    )["ModelPackageSummaryList"]
    entry = sagemaker.describe_model_package(ModelPackageName=latest["ModelPackageArn"])
    assert entry["CustomerMetadataProperties"]["comparison.decision"] == "promote"
    assert entry["CustomerMetadataProperties"]["comparison.champion"].endswith("/1")
    # AND the answers now come from version 2
    assert platform.predict({"instances": [_sample_image()]})[1]["model_version"] == "2"
    # AND no request failed during the switch
    assert answered[0] > 0
    assert failures == []


def test_local_down_stops_everything_it_started(platform: Platform) -> None:
    pid = platform.state.emulator_pid
    assert process_alive(pid)
    assert stop_platform(platform.state_dir, quiet=True)
    assert not process_alive(pid)
    assert LocalState.read(platform.state_dir) is None
