"""The Monitoring component: a dashboard of this stack's resources, failure alarms, a budget."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.offline import Plan
from tests.infra.conftest import cached_plan
from training_jobs.metrics import METRIC_DEFINITIONS


def dashboard(plan: Plan) -> dict[str, Any]:
    return json.loads(plan.named("monitoring-dashboard").inputs["dashboardBody"])


def own_names(plan: Plan) -> set[str]:
    functions = {r.outputs["name"] for r in plan.of_type("aws:lambda/function:Function")}
    api = plan.named("api-rest-api").inputs["name"]
    return {plan.outputs["endpointName"], api, *functions}


def test_the_dashboard_covers_every_part_of_the_loop(stack_plan: Plan) -> None:
    titles = [widget["properties"]["title"] for widget in dashboard(stack_plan)["widgets"]]
    for part in (
        "Endpoint invocations",
        "latency",
        "CPU, GPU, memory",
        "Lambda",
        "API Gateway",
        "Training",
        "Drift",
    ):
        assert any(part in title for title in titles), part


def test_every_dashboard_metric_is_one_of_this_stacks_resources(stack_plan: Plan) -> None:
    names = own_names(stack_plan)
    for widget in dashboard(stack_plan)["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):  # a SEARCH expression over this stack's training jobs
                assert row[0]["expression"].startswith("SEARCH('{/aws/sagemaker/TrainingJobs")
                continue
            dimension_values = row[3::2][: (len(row) - 2) // 2]
            assert names & set(dimension_values), row
        assert widget["properties"]["region"] == "us-east-1"


def test_the_training_widget_follows_every_metric_training_prints(stack_plan: Plan) -> None:
    (training,) = [
        w for w in dashboard(stack_plan)["widgets"] if w["properties"]["title"] == "Training metrics"
    ]
    labels = [row[0]["label"] for row in training["properties"]["metrics"]]
    assert labels == [definition["Name"] for definition in METRIC_DEFINITIONS]


def test_every_function_has_error_and_throttle_alarms(stack_plan: Plan) -> None:
    alarmed = {
        (a.inputs["dimensions"]["FunctionName"], a.inputs["metricName"])
        for a in stack_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.inputs.get("namespace") == "AWS/Lambda"
    }
    for function in stack_plan.of_type("aws:lambda/function:Function"):
        assert {(function.outputs["name"], "Errors"), (function.outputs["name"], "Throttles")} <= alarmed


def test_drift_alarms_use_the_configured_thresholds(prod_plan: Plan) -> None:
    drift = prod_plan.named("monitoring-feature-drift-alarm").inputs
    assert (drift["metricName"], drift["threshold"], drift["comparisonOperator"]) == (
        "MaxFeaturePSI",
        0.2,
        "GreaterThanThreshold",
    )
    confidence = prod_plan.named("monitoring-low-confidence-alarm").inputs
    assert (confidence["threshold"], confidence["comparisonOperator"]) == (0.80, "LessThanThreshold")
    assert drift["dimensions"] == {"EndpointName": "mlp-prod-endpoint", "VariantName": "primary"}


@pytest.mark.parametrize(("stack", "amount"), [("dev", "300.00"), ("prod", "5000.00")])
def test_the_budget_follows_the_stacks_cost_allocation_tag(stack: str, amount: str) -> None:
    budget = cached_plan(stack).named("monitoring-budget").inputs
    assert budget["limitAmount"] == amount and budget["timeUnit"] == "MONTHLY"
    assert budget["costFilters"] == [
        {"name": "TagKeyValue", "values": [f"user:ml-platform:stack$mlp-{stack}"]}
    ]
    topic = cached_plan(stack).outputs["alertTopicArn"]
    assert all(n["subscriberSnsTopicArns"] == [topic] for n in budget["notifications"])


def test_no_budget_without_an_amount() -> None:
    plan = cached_plan("dev", {"ml-platform:budget": {}})
    assert plan.of_type("aws:budgets/budget:Budget") == []


def test_the_drift_monitor_runs_daily_with_the_configured_thresholds(prod_plan: Plan) -> None:
    schedule = prod_plan.named("monitoring-drift-schedule").inputs
    assert schedule["scheduleExpression"] == "rate(1 day)"
    function = prod_plan.named("monitoring-drift-monitor").inputs
    assert function["handler"] == "handlers.monitoring.handler.lambda_handler"
    env = function["environment"]["variables"]
    assert (env["DRIFT_PSI"], env["CONFIDENCE_WARN"], env["CONFIDENCE_RETRAIN"]) == ("0.2", "0.88", "0.8")
    assert env["PIPELINE_NAME"] == prod_plan.outputs["trainingPipelineName"]
    assert env["CAPTURE_S3_URI"] == prod_plan.outputs["dataCaptureUri"]
    permission = prod_plan.named("monitoring-drift-schedule-permission").inputs
    assert permission["sourceArn"] == prod_plan.named("monitoring-drift-schedule").outputs["arn"]


def test_the_drift_monitor_may_start_only_this_stacks_pipeline(stack_plan: Plan) -> None:
    from tests.infra.conftest import policy_document  # noqa: PLC0415

    statements = {
        s["Sid"]: s for s in policy_document(stack_plan.named("monitoring-drift-monitor-policy"))["Statement"]
    }
    assert statements["StartRetraining"]["Resource"] == stack_plan.outputs["trainingPipelineArn"]
    raw = stack_plan.outputs["bucketArns"]["raw"]
    assert statements["ReadCapturedTrafficAndBaseline"]["Resource"][0] == f"{raw}/capture/*"
    # AND it may write one object only: the baseline it builds from captures for a model without one
    artifacts = stack_plan.outputs["bucketArns"]["artifacts"]
    assert statements["StoreCapturedBaseline"]["Action"] == "s3:PutObject"
    assert statements["StoreCapturedBaseline"]["Resource"] == f"{artifacts}/serving/baseline.json"


def test_a_failed_training_run_notifies_the_alert_topic(stack_plan: Plan) -> None:
    pattern = json.loads(stack_plan.named("monitoring-pipeline-failed").inputs["eventPattern"])
    assert pattern["detail"] == {
        "currentPipelineExecutionStatus": ["Failed"],
        "pipelineArn": [stack_plan.outputs["trainingPipelineArn"]],
    }
    target = stack_plan.named("monitoring-pipeline-failed-target").inputs
    assert target["arn"] == stack_plan.outputs["alertTopicArn"]


def test_the_model_server_widget_plots_what_the_servers_emf_lines_declare(prod_plan: Plan) -> None:
    from handlers.serving.metrics import ServerMetrics  # noqa: PLC0415

    # GIVEN the EMF line a model server of this endpoint prints after some traffic
    env = {"ENDPOINT_NAME": prod_plan.outputs["endpointName"], "VARIANT_NAME": "primary"}
    server = ServerMetrics(lambda: True, environ=env)
    server.count(200)
    server.request_finished(server.request_started())
    server.passes.record(2, 3, 0.004)
    line = server.emf_document()
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    declared = {metric["Name"] for metric in directive["Metrics"]}
    (dimensions,) = directive["Dimensions"]

    # WHEN the dashboard's model server widget is read
    (widget,) = [
        w for w in dashboard(prod_plan)["widgets"] if w["properties"]["title"].startswith("Model server")
    ]
    rows = widget["properties"]["metrics"]

    # THEN it plots the batch sizes and the latencies the line declares, under the line's own
    # namespace and dimensions, for this endpoint and variant
    assert {"MeanBatchRequests", "MeanBatchRows", "ServerLatencyP99"} <= {row[1] for row in rows}
    for row in rows:
        namespace, metric, *pairs, options = row
        assert namespace == directive["Namespace"] and metric in declared
        assert dict(zip(pairs[::2], pairs[1::2], strict=True)) == {name: line[name] for name in dimensions}
        assert options["stat"] in {"Average", "Maximum"}
