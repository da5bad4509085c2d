"""The local EventBridge bus: real events matched, with moto's own pattern matching, against the
rules the dev plan declares (created by ``emulator.provision``), and delivered to their Lambda
targets only."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator import events
from emulator.provision import AppliedStack, LocalApplier
from infra.offline import Plan, run_offline

EVENTS = Path(__file__).resolve().parents[2] / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SERVICES = ("s3", "kms", "sagemaker", "sns", "iam", "lambda", "events")
EMULATED_TYPES = (
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:lambda/function:Function",
    "aws:lambda/permission:Permission",
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
    "aws:cloudwatch/eventRule:EventRule",
    "aws:cloudwatch/eventTarget:EventTarget",
)


@pytest.fixture(scope="module")
def dev_plan() -> Plan:
    return run_offline("dev")


@dataclass
class Bus:
    """The bus over the applied dev stack; what it delivers (function ARN, event) is kept."""

    clients: dict[str, Any]
    applied: AppliedStack
    deployer_arn: str
    group: str
    endpoint: str
    delivered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def bus(self) -> events.LocalEventBus:
        deliver = lambda arn, event: self.delivered.append((arn, event))  # noqa: E731
        return events.LocalEventBus(lambda: events.events_backend(ACCOUNT, REGION), deliver)


@pytest.fixture
def bus(aws_credentials: None, dev_plan: Plan) -> Iterator[Bus]:
    with mock_aws():
        clients = {service: client(service) for service in SERVICES}
        applied = LocalApplier(clients, REGION).apply(dev_plan)
        deployer = clients["lambda"].get_function(FunctionName=dev_plan.outputs["deployerFunctionName"])
        yield Bus(
            clients,
            applied,
            deployer["Configuration"]["FunctionArn"],
            str(dev_plan.outputs["modelPackageGroupName"]),
            str(dev_plan.outputs["endpointName"]),
        )


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def approval(group: str, status: str = "Approved") -> dict[str, Any]:
    """tests/events/eventbridge_model_package_approved.json for ``group`` with ``status``."""
    event = json.loads((EVENTS / "eventbridge_model_package_approved.json").read_text())
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/1"
    event["resources"] = [arn]
    event["detail"].update(ModelPackageGroupName=group, ModelPackageArn=arn, ModelApprovalStatus=status)
    return dict(event)


def test_the_stacks_roles_functions_and_rules_are_all_emulated(bus: Bus, dev_plan: Plan) -> None:
    # GIVEN the dev plan applied with IAM, Lambda and EventBridge clients
    planned = dev_plan.type_counts()
    # THEN every role, policy, function, permission, invoke config, rule and target was created
    for kind in EMULATED_TYPES:
        assert bus.applied.created_types()[kind] == planned[kind] > 0, kind
    # AND what was skipped is counted per type (the API Gateway resources among them)
    skipped = bus.applied.skipped_types()
    assert not set(skipped) & set(EMULATED_TYPES)
    assert skipped["aws:apigateway/method:Method"] == planned["aws:apigateway/method:Method"]
    # AND the deployer's environment names the emulator's key, not the planned one
    deployer = bus.clients["lambda"].get_function_configuration(FunctionName="mlp-dev-deployer")
    alias = dev_plan.named("data-lake-key-alias").inputs["name"]
    key = bus.clients["kms"].describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
    assert deployer["Environment"]["Variables"]["KMS_KEY_ARN"] == key


def test_an_approval_of_this_groups_version_reaches_the_deployer(bus: Bus) -> None:
    # GIVEN SageMaker's event for a version of the stack's group turning Approved
    event = approval(bus.group)
    # WHEN it is put on the bus
    matched = bus.bus.put(copy.deepcopy(event))
    # THEN the deployer's approval rule matches, and the deployer gets the event as it was sent
    assert matched == ["mlp-dev-deployer-approved"]
    assert bus.delivered == [(bus.deployer_arn, event)]


def test_an_approval_in_another_group_reaches_nothing(bus: Bus) -> None:
    assert bus.bus.put(approval("someone-elses-models")) == []
    assert bus.delivered == []


def test_a_rejection_in_this_group_reaches_nothing(bus: Bus) -> None:
    assert bus.bus.put(approval(bus.group, status="Rejected")) == []
    assert bus.delivered == []


def test_an_endpoint_state_change_reaches_the_deployer_and_no_scheduled_rule(bus: Bus) -> None:
    # GIVEN SageMaker's event for the stack's endpoint turning InService
    event = json.loads((EVENTS / "eventbridge_endpoint_state_change.json").read_text())
    assert event["detail"]["EndpointName"] == bus.endpoint
    # WHEN it is put on the bus
    matched = bus.bus.put(event)
    # THEN only the deployer's endpoint rule matches: the schedules (drift, retraining), whose
    # pattern moto leaves empty, fire on their schedule, never on an event
    assert matched == ["mlp-dev-deployer-endpoint-changed"]
    assert [arn for arn, _ in bus.delivered] == [bus.deployer_arn]


def test_put_events_against_the_emulator_reaches_the_deployer(bus: Bus) -> None:
    # GIVEN moto's PutEvents extended with the bus (moto alone refuses Lambda targets)
    undo = events.extend_moto(bus.bus)
    try:
        # WHEN a client puts an approval event for the stack's group
        event = approval(bus.group)
        answer = bus.clients["events"].put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event["resources"],
                }
            ]
        )
    finally:
        undo()
    # THEN the deployer gets it, with EventBridge's envelope
    assert answer["FailedEntryCount"] == 0
    ((arn, delivered),) = bus.delivered
    assert arn == bus.deployer_arn
    assert delivered["detail"] == event["detail"] and delivered["resources"] == event["resources"]
    assert delivered["id"] == answer["Entries"][0]["EventId"] and delivered["account"] == ACCOUNT
