"""Verification: only InService on the expected config is a success; a silent rollback is a failure."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from handlers.deployer import handler as deployer
from handlers.deployer.errors import DeploymentError, DeploymentFailedError, DeploymentTimeoutError
from handlers.deployer.plan import TAG_EXPECTED_CONFIG, TAG_VERIFIED
from handlers.deployer.verify import verify_deployment
from tests.functional.conftest import REGION
from tests.functional.deployer.conftest import (
    ENDPOINT,
    ENDPOINT_ARN,
    PLANNED_ENV,
    FakeContext,
    emitted_metrics,
    endpoint_description,
    endpoint_event,
)

OLD, NEW = "mlp-dev-models-v1-0a1b2c3d", "mlp-dev-models-v2-4c1f9a07"


@pytest.fixture
def stubbed(deploy_env: Callable[..., None]) -> Iterator[tuple[Any, Stubber]]:
    """A SageMaker client on which every call must be queued (no moto: UpdateEndpoint is missing there)."""
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stubber:
        deployer.sagemaker_client.set(client)
        yield client, stubber
        stubber.assert_no_pending_responses()


def queue_autoscaling(stubber: Stubber, variant: str = "primary") -> None:
    """The scaling a verified deployment applies to ``variant``: deploy_env's bounds (1..3) and
    target (150 per instance), and the dev stack's declared off-hours actions."""
    scope = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{ENDPOINT}/variant/{variant}",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    stubber.add_response("register_scalable_target", {}, {**scope, "MinCapacity": 1, "MaxCapacity": 3})
    stubber.add_response(
        "put_scaling_policy",
        {"PolicyARN": "arn:aws:autoscaling:policy", "Alarms": []},
        {
            **scope,
            "PolicyName": f"{ENDPOINT}-{variant}-invocations-per-instance",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 150.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    off_hours = json.loads(PLANNED_ENV["OFF_HOURS"])
    for when, schedule, low, high in (
        ("down", off_hours["scaleDown"], off_hours["instances"], off_hours["instances"]),
        ("up", off_hours["scaleUp"], 1, 3),
    ):
        stubber.add_response(
            "put_scheduled_action",
            {},
            {
                **scope,
                "ScheduledActionName": f"{ENDPOINT}-{variant}-off-hours-{when}",
                "Schedule": schedule,
                "Timezone": off_hours["timezone"],
                "ScalableTargetAction": {"MinCapacity": low, "MaxCapacity": high},
            },
        )


class FakeTime:
    """An injectable clock whose sleep moves it forward."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def queue_states(stubber: Stubber, *states: dict[str, Any]) -> None:
    for state in states:
        stubber.add_response("describe_endpoint", state, {"EndpointName": ENDPOINT})


def deployment_metrics(stdout: str) -> list[tuple[str, str]]:
    return [
        (name, dims.get("EndpointName", ""))
        for name, dims in emitted_metrics(stdout)
        if name.startswith("Deployment")
    ]


# --- verify_deployment: the waiting entry point -------------------------------------------------------


def test_polls_until_in_service_on_the_expected_config(stubbed: tuple[Any, Stubber]) -> None:
    # GIVEN an endpoint updating twice more before it settles on the new config
    client, stubber = stubbed
    queue_states(
        stubber,
        endpoint_description("Updating", OLD, pending=NEW),
        endpoint_description("Updating", OLD, pending=NEW),
        endpoint_description("InService", NEW),
    )
    fake = FakeTime()

    # WHEN the deployment is verified
    verified = verify_deployment(
        client, ENDPOINT, NEW, interval_seconds=15, timeout_seconds=600, sleep=fake.sleep, clock=fake.clock
    )

    # THEN it succeeds after three looks, sleeping the interval between them
    assert (verified.config_name, verified.status, verified.checks) == (NEW, "InService", 3)
    assert fake.sleeps == [15, 15]


FAILURES = {
    "rolling back": (
        endpoint_description("RollingBack", OLD, failure_reason="Alarm mlp-dev-endpoint-5xx-rate fired"),
        "RollingBack",
        "Alarm mlp-dev-endpoint-5xx-rate fired",
    ),
    "rollback failed": (
        endpoint_description("UpdateRollbackFailed", OLD, failure_reason="Rollback timed out"),
        "UpdateRollbackFailed",
        "Rollback timed out",
    ),
    "failed": (
        endpoint_description(
            "Failed", OLD, failure_reason="The primary container did not pass the ping check"
        ),
        "Failed",
        "The primary container did not pass the ping check",
    ),
    "out of service": (endpoint_description("OutOfService", OLD), "OutOfService", None),
    # The trap: SageMaker rolled back, the endpoint is healthy, and a naive check says "InService".
    "silent rollback": (endpoint_description("InService", OLD), "InService", None),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_every_way_of_not_landing_is_a_failed_deployment(stubbed: tuple[Any, Stubber], case: str) -> None:
    # GIVEN an update that settles anywhere but InService on the new config
    client, stubber = stubbed
    state, status, reason = FAILURES[case]
    queue_states(stubber, endpoint_description("Updating", OLD, pending=NEW), state)
    fake = FakeTime()

    # WHEN it is verified
    with pytest.raises(DeploymentFailedError) as caught:
        verify_deployment(client, ENDPOINT, NEW, interval_seconds=5, sleep=fake.sleep, clock=fake.clock)

    # THEN it fails with the status, the config it is on and SageMaker's reason
    failure = caught.value
    assert (failure.status, failure.actual_config, failure.expected_config) == (status, OLD, NEW)
    assert failure.reason == reason
    if reason:
        assert reason in failure.message
    if case == "silent rollback":
        assert "rolled the deployment back" in failure.message


def test_waiting_is_bounded(stubbed: tuple[Any, Stubber]) -> None:
    # GIVEN an endpoint that stays Updating (a long canary bake)
    client, stubber = stubbed
    queue_states(stubber, *[endpoint_description("Updating", OLD, pending=NEW)] * 4)
    fake = FakeTime()

    # WHEN verified with a 90 s deadline and a 30 s interval
    with pytest.raises(DeploymentTimeoutError, match="still Updating"):
        verify_deployment(
            client, ENDPOINT, NEW, interval_seconds=30, timeout_seconds=90, sleep=fake.sleep, clock=fake.clock
        )

    # THEN it gave up at the deadline: four looks, 90 s of sleep, never more
    assert fake.sleeps == [30, 30, 30]
    assert fake.now - 1000.0 == 90


def test_a_vanished_endpoint_is_a_failed_deployment(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error(
        "describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT_ARN}".'
    )

    with pytest.raises(DeploymentFailedError) as caught:
        verify_deployment(client, ENDPOINT, NEW, sleep=FakeTime().sleep)
    assert caught.value.status == "NotFound"


# --- the endpoint state change event: one verification per event --------------------------------------


def queue_event_check(
    stubber: Stubber, state: dict[str, Any], tags: dict[str, str], verified: str | None = None
) -> None:
    """DescribeEndpoint, ListTags and (when an outcome is reached) the AddTags that records it."""
    stubber.add_response("describe_endpoint", state, {"EndpointName": ENDPOINT})
    stubber.add_response(
        "list_tags",
        {"Tags": [{"Key": key, "Value": value} for key, value in tags.items()]},
        {"ResourceArn": ENDPOINT_ARN},
    )
    if verified is not None:
        stubber.add_response(
            "add_tags",
            {"Tags": [{"Key": TAG_VERIFIED, "Value": verified}]},
            {"ResourceArn": ENDPOINT_ARN, "Tags": [{"Key": TAG_VERIFIED, "Value": verified}]},
        )


def handle(event: dict[str, Any]) -> dict[str, Any]:
    return deployer.lambda_handler(event, FakeContext())


def test_in_service_on_the_expected_config_succeeds_and_is_autoscaled(
    stubbed: tuple[Any, Stubber], scaling: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the deployer expects NEW and the endpoint is InService on NEW
    _, stubber = stubbed
    queue_event_check(
        stubber,
        endpoint_description("InService", NEW),
        {TAG_EXPECTED_CONFIG: NEW},
        verified=f"succeeded:{NEW}",
    )
    queue_autoscaling(scaling)

    # WHEN SageMaker's IN_SERVICE event arrives
    result = handle(endpoint_event("IN_SERVICE", NEW))

    # THEN the deployment is verified, counted once, and the outcome recorded on the endpoint
    assert result["status"] == "succeeded"
    assert result["expected_config"] == NEW
    assert deployment_metrics(capsys.readouterr().out) == [("DeploymentSucceeded", ENDPOINT)]
    # AND the variant is (re-)registered for autoscaling with the configured bounds and target
    assert result["autoscaling"] == [f"endpoint/{ENDPOINT}/variant/primary"]


def test_autoscaling_refused_leaves_the_deployment_unverified_for_the_retry(
    stubbed: tuple[Any, Stubber], scaling: Stubber
) -> None:
    # GIVEN the endpoint is InService on NEW but Application Auto Scaling refuses the target
    _, stubber = stubbed
    queue_event_check(stubber, endpoint_description("InService", NEW), {TAG_EXPECTED_CONFIG: NEW})
    scaling.add_client_error("register_scalable_target", "ValidationException", "not in service")

    # WHEN the event arrives THEN the Lambda fails naming the variant and the call (and is retried),
    # and nothing is marked verified: the retry scales again instead of calling it a duplicate
    with pytest.raises(DeploymentError, match="variant primary: register_scalable_target failed"):
        handle(endpoint_event("IN_SERVICE", NEW))


@pytest.mark.parametrize(
    ("event_status", "state"),
    [
        ("ROLLING_BACK", endpoint_description("RollingBack", OLD, failure_reason="Alarm fired")),
        ("UPDATE_ROLLBACK_FAILED", endpoint_description("UpdateRollbackFailed", OLD)),
        ("IN_SERVICE", endpoint_description("InService", OLD)),  # the silent rollback
    ],
)
def test_a_rolled_back_deployment_fails_from_its_event(
    stubbed: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str], event_status: str, state: dict[str, Any]
) -> None:
    # GIVEN the deployer expects NEW but the endpoint rolled back towards OLD
    _, stubber = stubbed
    queue_event_check(stubber, state, {TAG_EXPECTED_CONFIG: NEW}, verified=f"failed:{NEW}")

    # WHEN the state change event arrives THEN the Lambda fails loudly and counts it
    with pytest.raises(DeploymentFailedError) as caught:
        handle(endpoint_event(event_status, OLD))
    assert caught.value.expected_config == NEW
    assert caught.value.actual_config == OLD
    assert deployment_metrics(capsys.readouterr().out) == [("DeploymentFailed", ENDPOINT)]


def test_an_updating_endpoint_is_still_in_progress(
    stubbed: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    _, stubber = stubbed
    queue_event_check(stubber, endpoint_description("Updating", OLD, pending=NEW), {TAG_EXPECTED_CONFIG: NEW})

    result = handle(endpoint_event("UPDATING", OLD))

    assert result["status"] == "in-progress"
    assert deployment_metrics(capsys.readouterr().out) == []


def test_a_repeated_event_is_counted_once(
    stubbed: tuple[Any, Stubber], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an outcome already recorded for NEW (SageMaker may send an event more than once)
    _, stubber = stubbed
    queue_event_check(
        stubber,
        endpoint_description("InService", NEW),
        {TAG_EXPECTED_CONFIG: NEW, TAG_VERIFIED: f"succeeded:{NEW}"},
    )

    # WHEN the event comes again THEN no second metric and no second tag (Stubber would reject it)
    result = handle(endpoint_event("IN_SERVICE", NEW))
    assert (result["status"], result["outcome"]) == ("duplicate", "succeeded")
    assert deployment_metrics(capsys.readouterr().out) == []


def test_endpoints_this_deployer_did_not_deploy_are_ignored(stubbed: tuple[Any, Stubber]) -> None:
    # GIVEN an event for another endpoint: no call at all (Stubber has nothing queued)
    other = endpoint_event()
    other["detail"]["EndpointName"] = "someone-elses-endpoint"
    assert handle(other)["status"] == "ignored"

    # GIVEN our endpoint without an expected-config tag: ignored after one look
    _, stubber = stubbed
    queue_event_check(stubber, endpoint_description("InService", OLD), {})
    assert handle(endpoint_event())["status"] == "ignored"
