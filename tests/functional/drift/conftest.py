"""The drift monitor on moto: capture bucket, baseline, pipeline, alert topic (observed via SQS)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers.monitoring import handler as drift_monitor
from tests.functional.conftest import REGION
from tests.functional.drift.capture import gaussian_rows, write_capture
from training_jobs.baselines import compute_baseline

EVENTS = Path(__file__).resolve().parents[2] / "events"
RAW = "mlp-dev-raw-123456789012-us-east-1"
ARTIFACTS = "mlp-dev-artifacts-123456789012-us-east-1"
ENDPOINT = "mlp-dev-endpoint"
VARIANT = "AllTraffic"
CAPTURE_URI = f"s3://{RAW}/capture/{ENDPOINT}"
BASELINE_URI = f"s3://{ARTIFACTS}/models/run-1/baseline.json"
PIPELINE = "mlp-dev-training"
FEATURE_MEANS = (0.0, 5.0, -2.0)
SCHEDULE_EVENT = json.loads((EVENTS / "eventbridge_scheduled_drift.json").read_text())
WINDOW_END = datetime.fromisoformat(SCHEDULE_EVENT["time"])


class FakeContext:
    function_name = "mlp-dev-drift-monitor"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mlp-dev-drift-monitor"
    aws_request_id = "3f1c2b7a-8d4e-4f6a-9b0c-1d2e3f4a5b6c"


@dataclass
class DriftWorld:
    s3: Any
    cloudwatch: Any
    sagemaker: Any
    sns: Any
    sqs: Any
    topic_arn: str
    queue_url: str

    def capture(
        self, rows: list[list[float]], confidences: list[float], *, hours_before_end: float = 3
    ) -> None:
        write_capture(
            self.s3,
            CAPTURE_URI,
            ENDPOINT,
            VARIANT,
            rows,
            confidences=confidences,
            start=WINDOW_END - timedelta(hours=hours_before_end),
        )

    def executions(self) -> list[dict[str, Any]]:
        return self.sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]

    def alerts(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [json.loads(message["Body"]) for message in messages]

    def metric(self, name: str, variant: str = VARIANT) -> list[float]:
        """The values of ``name`` published for the endpoint's ``variant``."""
        return self._points(
            name, [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
        )

    def metric_endpoint_only(self, name: str) -> list[float]:
        return self._points(name, [{"Name": "EndpointName", "Value": ENDPOINT}])

    def _points(self, name: str, dimensions: list[dict[str, str]]) -> list[float]:
        now = datetime.now(UTC)
        points = self.cloudwatch.get_metric_statistics(
            Namespace="ml-platform",
            MetricName=name,
            Dimensions=dimensions,
            StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(hours=1),
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
        return [point["Maximum"] for point in points]


@pytest.fixture
def world(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriftWorld]:
    """Buckets, the training baseline, a pipeline and a topic with a queue subscribed, all on moto."""
    with mock_aws():
        clients: dict[str, Any] = {
            n: boto3.client(n, region_name=REGION) for n in ("s3", "cloudwatch", "sagemaker", "sns", "sqs")
        }
        s3 = clients["s3"]
        for bucket in (RAW, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        rng = random.Random(42)
        baseline = compute_baseline(
            gaussian_rows(2000, FEATURE_MEANS, rng),
            [rng.uniform(0.86, 1.0) for _ in range(400)],
            ["age", "bmi", "bp"],
        )
        s3.put_object(Bucket=ARTIFACTS, Key="models/run-1/baseline.json", Body=json.dumps(baseline).encode())
        clients["sagemaker"].create_pipeline(
            PipelineName=PIPELINE,
            RoleArn="arn:aws:iam::123456789012:role/mlp-dev-pipeline",
            PipelineDefinition=json.dumps(
                {
                    "Version": "2020-12-01",
                    "Parameters": [{"Name": "DatasetVersion", "Type": "String", "DefaultValue": "none"}],
                    "Steps": [],
                }
            ),
        )
        topic_arn = clients["sns"].create_topic(Name="mlp-dev-alerts")["TopicArn"]
        queue_url = clients["sqs"].create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = clients["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        clients["sns"].subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        env = {
            "CAPTURE_S3_URI": CAPTURE_URI,
            "ENDPOINT_NAME": ENDPOINT,
            "BASELINE_S3_URI": BASELINE_URI,
            "PIPELINE_NAME": PIPELINE,
            "ALERT_TOPIC_ARN": topic_arn,
            "DRIFT_PSI": "0.2",
            "CONFIDENCE_WARN": "0.88",
            "CONFIDENCE_RETRAIN": "0.80",
            "WINDOW_HOURS": "24",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        drift_monitor.s3_client.set(s3)
        drift_monitor.cloudwatch_client.set(clients["cloudwatch"])
        drift_monitor.sagemaker_client.set(clients["sagemaker"])
        drift_monitor.sns_client.set(clients["sns"])
        try:
            yield DriftWorld(queue_url=queue_url, topic_arn=topic_arn, **clients)
        finally:
            for lazy in (
                drift_monitor.s3_client,
                drift_monitor.cloudwatch_client,
                drift_monitor.sagemaker_client,
                drift_monitor.sns_client,
            ):
                lazy.set(None)


@pytest.fixture
def run_monitor() -> Callable[..., dict[str, Any]]:
    """Invoke the Lambda handler with the scheduled event (its ``time`` ends the window)."""

    def invoke(**event_overrides: Any) -> dict[str, Any]:
        return drift_monitor.lambda_handler({**SCHEDULE_EVENT, **event_overrides}, FakeContext())

    return invoke
