"""The dev and prod plans applied to moto by ``emulator.provision``: the CloudWatch alarms and dashboard,
the alert topic's policy and the prediction API's declaration are held as the program declares them.

The emulator runs in another region than the plan's, so every ARN it holds differs from the planned
one: an alarm action that was not resolved to the emulator's topic would show.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator.provision import AppliedStack, LocalApplier
from infra.offline import Plan, PlannedResource, run_offline

EMULATOR_REGION = "eu-west-2"
SERVICES = ("s3", "kms", "sagemaker", "sns", "iam", "lambda", "events", "cloudwatch", "apigateway")
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
REST_API = "aws:apigateway/restApi:RestApi"
API_RESOURCE = "aws:apigateway/resource:Resource"
API_METHOD = "aws:apigateway/method:Method"
API_KEY = "aws:apigateway/apiKey:ApiKey"
USAGE_PLAN = "aws:apigateway/usagePlan:UsagePlan"
# What this module's services emulate beyond the data lake, the functions and the rules.
EMULATED_TYPES = (
    ALARM,
    DASHBOARD,
    TOPIC_POLICY,
    REST_API,
    API_RESOURCE,
    API_METHOD,
    "aws:apigateway/integration:Integration",
    "aws:apigateway/model:Model",
    "aws:apigateway/requestValidator:RequestValidator",
    "aws:apigateway/response:Response",
    "aws:apigateway/deployment:Deployment",
    "aws:apigateway/stage:Stage",
    "aws:apigateway/methodSettings:MethodSettings",
    "aws:apigateway/account:Account",
)


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request: pytest.FixtureRequest) -> Plan:
    return run_offline(str(request.param))


@dataclass
class Emulated:
    plan: Plan
    applied: AppliedStack
    clients: dict[str, Any]

    @property
    def topic_arn(self) -> str:
        """The emulator's ARN of the alert topic (the plan's only topic)."""
        (topic,) = self.plan.of_type(TOPIC)
        arn = self.clients["sns"].create_topic(Name=topic.inputs["name"])["TopicArn"]  # idempotent
        assert arn != topic.outputs["arn"]  # the regions differ: resolution is observable
        return str(arn)


@pytest.fixture
def emulated(aws_credentials: None, plan: Plan) -> Iterator[Emulated]:
    with mock_aws():
        clients = {
            service: boto3.client(service, region_name=EMULATOR_REGION)  # type: ignore[call-overload]
            for service in SERVICES
        }
        yield Emulated(plan, LocalApplier(clients, EMULATOR_REGION).apply(plan), clients)


def _dimensions(planned: dict[str, Any]) -> list[dict[str, str]]:
    return sorted(({"Name": k, "Value": str(v)} for k, v in planned.items()), key=lambda d: d["Name"])


def _held_alarm(emulated: Emulated, planned: PlannedResource) -> dict[str, Any]:
    name = planned.inputs["name"]
    (alarm,) = emulated.clients["cloudwatch"].describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return dict(alarm)


def test_every_planned_alarm_is_held_with_its_metric_threshold_and_the_emulators_topic(
    emulated: Emulated,
) -> None:
    # GIVEN the plan applied with a CloudWatch client
    planned_alarms = emulated.plan.of_type(ALARM)
    assert planned_alarms
    held = emulated.clients["cloudwatch"].describe_alarms()["MetricAlarms"]
    # THEN the emulator holds exactly the planned alarms
    assert sorted(a["AlarmName"] for a in held) == sorted(p.inputs["name"] for p in planned_alarms)
    for planned in planned_alarms:
        inputs, alarm = planned.inputs, _held_alarm(emulated, planned)
        # AND each with its threshold, comparison and evaluation
        assert alarm["Threshold"] == float(inputs["threshold"]), planned.name
        assert alarm["ComparisonOperator"] == inputs["comparisonOperator"], planned.name
        assert alarm["EvaluationPeriods"] == int(inputs["evaluationPeriods"]), planned.name
        assert alarm["TreatMissingData"] == inputs["treatMissingData"], planned.name
        # AND its actions on the emulator's topic, not the planned ARN
        assert alarm["AlarmActions"] == [emulated.topic_arn], planned.name
        assert alarm.get("OKActions", []) == ([emulated.topic_arn] if inputs.get("okActions") else [])
        if inputs.get("metricQueries"):
            # AND a metric-math alarm keeps its queries: the metrics and the expression over them
            queries = {q["Id"]: q for q in alarm["Metrics"]}
            assert set(queries) == {q["id"] for q in inputs["metricQueries"]}, planned.name
            for query in inputs["metricQueries"]:
                held_query = queries[query["id"]]
                assert held_query["ReturnData"] is bool(query["returnData"])
                if "expression" in query:
                    assert held_query["Expression"] == query["expression"]
                else:
                    stat = held_query["MetricStat"]
                    assert stat["Metric"]["MetricName"] == query["metric"]["metricName"]
                    assert stat["Metric"]["Namespace"] == query["metric"]["namespace"]
                    assert stat["Stat"] == query["metric"]["stat"]
                    assert stat["Period"] == int(query["metric"]["period"])
                    held_dimensions = sorted(stat["Metric"]["Dimensions"], key=lambda d: d["Name"])
                    assert held_dimensions == _dimensions(query["metric"]["dimensions"])
        else:
            # AND a metric alarm keeps its metric, statistic, period and dimensions
            assert (alarm["Namespace"], alarm["MetricName"]) == (inputs["namespace"], inputs["metricName"])
            statistic = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
            assert statistic == (inputs.get("statistic") or inputs.get("extendedStatistic")), planned.name
            assert alarm["Period"] == int(inputs["period"]), planned.name
            held_dimensions = sorted(alarm["Dimensions"], key=lambda d: d["Name"])
            assert held_dimensions == _dimensions(inputs["dimensions"]), planned.name


def test_the_dashboard_is_held_with_the_planned_body(emulated: Emulated) -> None:
    (planned,) = emulated.plan.of_type(DASHBOARD)
    dashboard = emulated.clients["cloudwatch"].get_dashboard(DashboardName=planned.inputs["dashboardName"])
    assert json.loads(dashboard["DashboardBody"]) == json.loads(planned.inputs["dashboardBody"])
    assert json.loads(dashboard["DashboardBody"])["widgets"]


def test_the_topic_policy_names_the_emulators_topic(emulated: Emulated) -> None:
    (planned,) = emulated.plan.of_type(TOPIC_POLICY)
    attributes = emulated.clients["sns"].get_topic_attributes(TopicArn=emulated.topic_arn)["Attributes"]
    policy = json.loads(attributes["Policy"])
    planned_policy = json.loads(planned.inputs["policy"])
    assert [s["Sid"] for s in policy["Statement"]] == [s["Sid"] for s in planned_policy["Statement"]]
    assert {s["Resource"] for s in policy["Statement"]} == {emulated.topic_arn}


def test_the_rest_api_is_listed_by_name_with_its_routes_stage_and_usage_plan(emulated: Emulated) -> None:
    apigateway = emulated.clients["apigateway"]
    (planned_api,) = emulated.plan.of_type(REST_API)
    # THEN get-rest-apis lists the stack's API under its name
    (api,) = apigateway.get_rest_apis()["items"]
    assert api["name"] == planned_api.inputs["name"]
    # AND it has every planned resource (under the root) and every planned method on them
    resources = apigateway.get_resources(restApiId=api["id"], limit=500)["items"]
    assert len(resources) == len(emulated.plan.of_type(API_RESOURCE)) + 1
    paths = {resource["path"] for resource in resources}
    assert {"/", "/v1", "/v1/predict", "/v1/health", "/v1/predict/{proxy+}"} <= paths
    methods = [(r["path"], m) for r in resources for m in r.get("resourceMethods", {})]
    assert len(methods) == len(emulated.plan.of_type(API_METHOD))
    assert ("/v1/predict", "POST") in methods
    # AND the planned stage, on a deployment of the API
    (planned_stage,) = emulated.plan.of_type("aws:apigateway/stage:Stage")
    stage = apigateway.get_stage(restApiId=api["id"], stageName=planned_stage.inputs["stageName"])
    assert stage["deploymentId"] in {
        d["id"] for d in apigateway.get_deployments(restApiId=api["id"])["items"]
    }
    assert stage["methodSettings"]["*/*"]["throttlingBurstLimit"] == int(
        emulated.plan.of_type("aws:apigateway/methodSettings:MethodSettings")[0].inputs["settings"][
            "throttlingBurstLimit"
        ]
    )
    # AND the usage plan (and API key) where the stack declares them, on the emulator's API
    plans = apigateway.get_usage_plans()["items"]
    assert len(plans) == len(emulated.plan.of_type(USAGE_PLAN))
    for usage_plan in plans:
        assert usage_plan["apiStages"] == [{"apiId": api["id"], "stage": planned_stage.inputs["stageName"]}]
        keys = apigateway.get_usage_plan_keys(usagePlanId=usage_plan["id"])["items"]
        assert [key["name"] for key in keys] == [k.inputs["name"] for k in emulated.plan.of_type(API_KEY)]
    assert len(apigateway.get_api_keys()["items"]) == len(emulated.plan.of_type(API_KEY))


def test_alarms_dashboard_topic_policy_and_api_are_counted_created_not_skipped(emulated: Emulated) -> None:
    planned = emulated.plan.type_counts()
    created, skipped = emulated.applied.created_types(), emulated.applied.skipped_types()
    kinds = [*EMULATED_TYPES, *(kind for kind in (API_KEY, USAGE_PLAN) if planned[kind])]
    for kind in kinds:
        assert created[kind] == planned[kind] > 0, kind
    assert not set(skipped) & set(kinds)
    assert not [kind for kind in skipped if kind.startswith(("aws:apigateway/", "aws:cloudwatch/metric"))]
    # AND every planned resource is either created or skipped, once
    counted = len(emulated.applied.created) + len(emulated.applied.skipped)
    custom = [r for r in emulated.plan.resources if r.custom and not r.type.startswith("pulumi:providers:")]
    assert counted == len(custom)


def test_without_cloudwatch_and_apigateway_clients_their_types_are_skipped(
    aws_credentials: None, plan: Plan
) -> None:
    with mock_aws():
        services = ("s3", "kms", "sagemaker", "sns")
        clients = {s: boto3.client(s, region_name=EMULATOR_REGION) for s in services}  # type: ignore[call-overload]
        applied = LocalApplier(clients, EMULATOR_REGION).apply(plan)
    skipped = applied.skipped_types()
    assert skipped[ALARM] == plan.type_counts()[ALARM] > 0
    assert skipped[REST_API] == 1
    assert not applied.created_types()[ALARM]
