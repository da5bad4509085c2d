"""BatchPreprocessing under the mock runtime: its trigger, its permissions, its dead-letter queue, and
the aliases that keep a stack deployed before the component existed from replacing anything."""

from __future__ import annotations

import json

import pytest

from infra.offline import Plan, PlannedResource
from tests.infra.conftest import as_list, cached_plan, function_statements, policy_document

OLD_PARENT = "mlplatform:index:PredictionApi"


@pytest.fixture(params=["dev", "prod"], scope="module")
def plan(request: pytest.FixtureRequest) -> Plan:
    return cached_plan(request.param)


def component(plan: Plan) -> PlannedResource:
    (resource,) = plan.of_type("mlplatform:index:BatchPreprocessing")
    return resource


def function(plan: Plan, key: str) -> PlannedResource:
    return plan.named(f"api-{key}")


# --- where the resources live, and where they lived --------------------------------------------------


def test_the_function_its_queue_and_trigger_belong_to_the_component(plan: Plan) -> None:
    children = {child.name for child in plan.children_of(component(plan))}
    assert {"api-preprocess-batch", "api-preprocess-dlq", "api-preprocess-new-data"} <= children
    assert plan.outputs["preprocessFunctionArn"] == function(plan, "preprocess-batch").outputs["arn"]
    assert plan.outputs["preprocessDeadLetterQueueUrl"] == plan.named("api-preprocess-dlq").id


def test_each_moved_resource_aliases_the_urn_it_had_under_the_api_component(plan: Plan) -> None:
    # GIVEN the URN a resource had when the API component declared it
    def urn_under_the_api(resource: PlannedResource) -> str:
        return f"urn:pulumi:{plan.stack}::ml-platform::{OLD_PARENT}${resource.type}::{resource.name}"

    moved = [*plan.children_of(component(plan)), plan.named("api-powertools-layer")]
    assert len(moved) >= 10
    # THEN its new declaration names that URN as an alias: `pulumi up` moves its state, replaces nothing
    for resource in moved:
        assert resource.urn != urn_under_the_api(resource)
        assert urn_under_the_api(resource) in resource.aliases, resource.name
    # AND resources that did not move carry no such alias
    assert plan.named("api-predict-api").aliases == ()


# --- permissions -------------------------------------------------------------------------------------


def test_batch_reads_raw_and_writes_only_processed_and_quarantine(plan: Plan) -> None:
    arns = plan.outputs["bucketArns"]
    by_sid = {s["Sid"]: s for s in function_statements(plan, "api-preprocess-batch")}
    assert by_sid["ReadRawObjects"]["Resource"] == f"{arns['raw']}/raw/*"
    assert set(by_sid["ReadRawObjects"]["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert by_sid["WriteProcessedAndQuarantine"]["Resource"] == [
        f"{arns['processed']}/processed/*",
        f"{arns['processed']}/quarantine/*",
    ]
    assert by_sid["TellMissingOutputs"] == {
        "Sid": "TellMissingOutputs",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": arns["processed"],
    }
    writes = [s for s in by_sid.values() if "s3:PutObject" in as_list(s["Action"])]
    assert [s["Sid"] for s in writes] == ["WriteProcessedAndQuarantine"]
    assert by_sid["UseStackKey"]["Resource"] == plan.outputs["kmsKeyArn"]
    assert (
        by_sid["SendFailuresToDeadLetterQueue"]["Resource"] == plan.named("api-preprocess-dlq").outputs["arn"]
    )


def test_objects_created_under_raw_start_preprocessing(plan: Plan) -> None:
    rule = plan.named("api-preprocess-new-data")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [plan.outputs["bucketNames"]["raw"]]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "raw/"}]
    target = plan.named("api-preprocess-new-data-target").inputs
    assert target["rule"] == rule.inputs["name"]
    assert target["arn"] == function(plan, "preprocess-batch").outputs["arn"]


def test_failed_batches_go_to_an_encrypted_tls_only_dead_letter_queue(plan: Plan) -> None:
    queue = plan.named("api-preprocess-dlq")
    assert queue.inputs["kmsMasterKeyId"] == plan.outputs["kmsKeyArn"]
    invoke_config = plan.named("api-preprocess-batch-async").inputs
    assert invoke_config["functionName"] == function(plan, "preprocess-batch").inputs["name"]
    assert 0 <= invoke_config["maximumRetryAttempts"] <= 2
    assert invoke_config["destinationConfig"] == {"onFailure": {"destination": queue.outputs["arn"]}}
    (statement,) = policy_document(plan.named("api-preprocess-dlq-policy"))["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Resource"] == queue.outputs["arn"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
