"""Data capture through the runtime gateway: SageMaker's files, readable by the drift monitor."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator.capture import CaptureWriter, Invocation
from emulator.runtime import EndpointRouter, Route, RuntimeGateway
from handlers.monitoring.capture import CapturedWindow, add_capture_lines
from tests.functional.local.conftest import ENDPOINT, REGION, VARIANT, FakeContainer, runtime_client

BUCKET = "mlp-local-raw"
DESTINATION = f"s3://{BUCKET}/capture/{ENDPOINT}"  # infra/serving.py: <raw bucket>/capture/<endpoint>


def capture_key(variant: str) -> re.Pattern[str]:
    """SageMaker's key for a capture file of ``variant``: the variant is part of the path."""
    return re.compile(
        rf"capture/{ENDPOINT}/{ENDPOINT}/{variant}/\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/\d{{2}}-\d{{2}}-\d{{3}}-[0-9a-f-]{{36}}\.jsonl"
    )


KEY = capture_key(VARIANT)
FEATURES = ("a", "b", "c")


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def capturing(s3: Any, router: EndpointRouter, fake_container: FakeContainer) -> Iterator[RuntimeGateway]:
    writer = CaptureWriter(s3, DESTINATION)
    gateway = RuntimeGateway(router, writer, host="127.0.0.1", port=0, region=REGION)
    router.set_route(ENDPOINT, Route(fake_container.url, VARIANT, "config-1", "1"))
    gateway.start()
    yield gateway
    gateway.stop()
    writer.close()


def read_window(s3: Any) -> tuple[list[str], CapturedWindow]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    window = CapturedWindow()
    now = datetime.now(UTC)
    for key in keys:
        text = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        add_capture_lines(window, text, FEATURES, now - timedelta(hours=1), now + timedelta(hours=1))
    return keys, window


def test_invocations_land_in_s3_as_sagemaker_writes_them(capturing: RuntimeGateway, s3: Any) -> None:
    # GIVEN a gateway capturing every invocation of an endpoint
    client = runtime_client(capturing.url)
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]

    # WHEN JSON, CSV and binary requests are served and capture is flushed
    client.invoke_endpoint(
        EndpointName=ENDPOINT,
        Body=json.dumps({"instances": rows}),
        ContentType="application/json",
        InferenceId="req-1",
    )
    client.invoke_endpoint(EndpointName=ENDPOINT, Body="7,8,9\n", ContentType="text/csv")
    client.invoke_endpoint(
        EndpointName=ENDPOINT, Body=b"[[0.5, 0.5, 0.5]]", ContentType="application/x-custom"
    )
    assert capturing.capture is not None
    capturing.capture.flush()

    # THEN one object at SageMaker's key layout holds the three requests, which the drift
    # monitor's reader turns back into the same rows and the container's confidences
    keys, window = read_window(s3)
    assert len(keys) == 1 and KEY.fullmatch(keys[0]), keys
    assert window.requests == 3 and window.skipped_lines == 0
    assert window.rows == [*rows, [7.0, 8.0, 9.0], [0.5, 0.5, 0.5]]
    assert window.confidences == [0.75] * 4
    lines = [
        json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().splitlines()
    ]
    encodings = [line["captureData"]["endpointInput"]["encoding"] for line in lines]
    assert encodings == ["JSON", "CSV", "BASE64"]
    assert lines[0]["eventMetadata"]["inferenceId"] == "req-1"
    assert lines[0]["eventVersion"] == "0"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", lines[0]["eventMetadata"]["inferenceTime"])


def test_failed_invocations_and_zero_sampling_are_not_captured(
    capturing: RuntimeGateway, router: EndpointRouter, fake_container: FakeContainer, s3: Any
) -> None:
    # GIVEN one request the container refuses, then the route switched to 0 % sampling
    client = runtime_client(capturing.url)
    with pytest.raises(client.exceptions.ModelError):
        client.invoke_endpoint(EndpointName=ENDPOINT, Body=b"not json", ContentType="application/json")
    router.set_route(ENDPOINT, Route(fake_container.url, VARIANT, "config-2", "2", capture_percent=0))

    # WHEN a successful request follows and capture is flushed
    client.invoke_endpoint(EndpointName=ENDPOINT, Body=b"[[1, 2, 3]]", ContentType="application/json")
    assert capturing.capture is not None
    capturing.capture.flush()

    # THEN nothing was written
    keys, _ = read_window(s3)
    assert keys == []
    assert capturing.capture.stats.records == 0


def test_a_full_buffer_is_written_without_a_flush(s3: Any) -> None:
    # GIVEN a writer that writes every 2 records
    writer = CaptureWriter(s3, DESTINATION, max_records=2)
    invocation = Invocation(ENDPOINT, VARIANT, b"[[1, 2, 3]]", "application/json", b"[]", "application/json")

    # WHEN 2 records arrive and the writer is closed (which waits for the background write)
    writer.record(invocation)
    writer.record(invocation)
    pending_before_close = writer.buffered
    writer.close()

    # THEN the background writer wrote them as one object
    keys, window = read_window(s3)
    assert pending_before_close == 0
    assert len(keys) == 1 and window.requests == 2
    assert writer.stats.objects_written == 1


def test_s3_failures_never_fail_a_prediction(
    s3: Any, router: EndpointRouter, fake_container: FakeContainer
) -> None:
    # GIVEN capture into a bucket that does not exist
    writer = CaptureWriter(s3, "s3://no-such-bucket/capture")
    gateway = RuntimeGateway(router, writer, host="127.0.0.1", port=0)
    router.set_route(ENDPOINT, Route(fake_container.url, VARIANT))
    gateway.start()
    try:
        # WHEN a request is served and capture flushed
        response = runtime_client(gateway.url).invoke_endpoint(
            EndpointName=ENDPOINT, Body=b"[[1, 2, 3]]", ContentType="application/json"
        )
        writer.flush()
    finally:
        gateway.stop()
        writer.close()

    # THEN the prediction succeeded and the failed write was counted
    assert json.loads(response["Body"].read())["server"] == "blue"
    assert writer.stats.write_errors == 1 and writer.stats.records_dropped == 1


def test_capture_files_are_per_variant_and_record_the_variant_that_answered(
    s3: Any, router: EndpointRouter
) -> None:
    # GIVEN an endpoint with variants a and b, each its own container, capturing every invocation
    containers = {name: FakeContainer(name).start() for name in ("a", "b")}
    router.set_routes(ENDPOINT, [Route(containers[name].url, name, "config-ab", name) for name in ("a", "b")])
    writer = CaptureWriter(s3, DESTINATION)
    gateway = RuntimeGateway(router, writer, host="127.0.0.1", port=0, region=REGION)
    gateway.start()
    try:
        # WHEN a answers two requests and b one, then capture is flushed
        client = runtime_client(gateway.url)
        for name, row in (("a", [1.0, 1.0, 1.0]), ("b", [2.0, 2.0, 2.0]), ("a", [3.0, 3.0, 3.0])):
            client.invoke_endpoint(
                EndpointName=ENDPOINT,
                Body=json.dumps([row]),
                ContentType="application/json",
                TargetVariant=name,
            )
        writer.flush()
    finally:
        gateway.stop()
        writer.close()
        for container in containers.values():
            container.stop()

    # THEN each variant has its own file under its own key, holding exactly the requests it answered
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    by_variant = {name: [key for key in keys if capture_key(name).fullmatch(key)] for name in ("a", "b")}
    assert len(keys) == 2 and all(len(found) == 1 for found in by_variant.values()), keys
    rows = {name: _captured_rows(s3, found[0]) for name, found in by_variant.items()}
    assert rows == {"a": [[[1.0, 1.0, 1.0]], [[3.0, 3.0, 3.0]]], "b": [[[2.0, 2.0, 2.0]]]}


def _captured_rows(s3: Any, key: str) -> list[Any]:
    lines = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    return [json.loads(json.loads(line)["captureData"]["endpointInput"]["data"]) for line in lines]
