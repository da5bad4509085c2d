"""Monitoring: one dashboard for the whole loop, an alarm on every failure signal, and a budget.

The endpoint's rollback alarms (5xx rate, model latency p99) live with the endpoint and the
deployment-failure alarm with the deployer; this component adds the rest: Lambda errors and
throttles, API Gateway 5xx, drift (feature PSI, prediction confidence), and the monthly budget on
the stack's cost-allocation tag. Every alarm has dimensions and notifies the alert topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.common.contracts import BASELINE_KEY, METRICS_NAMESPACE
from handlers.monitoring import settings as drift
from infra.context import StackIdentity
from infra.functions import FunctionBuilder, FunctionSettings
from infra.lambda_package import HANDLER_ENTRYPOINTS
from infra.stack_config import AlarmsConfig, BudgetConfig

COMPONENT_TYPE = "mlplatform:index:Monitoring"
SAGEMAKER = "AWS/SageMaker"
ENDPOINT_INSTANCES = "/aws/sagemaker/Endpoints"
TRAINING_JOBS = "/aws/sagemaker/TrainingJobs"
PERIOD = 300
BUDGET_THRESHOLDS = (("ACTUAL", 80), ("FORECASTED", 100))
# The drift monitor looks at the last day of captured traffic, once a day.
DRIFT_SCHEDULE = "rate(1 day)"
DRIFT_WINDOW_HOURS = 24
DRIFT_ASYNC_RETRIES = 2  # the daily check retried twice before the failure alerts


@dataclass
class MonitoringArgs:
    """Inputs of :class:`Monitoring`: what to watch, the thresholds and where alarms go."""

    stack: StackIdentity
    endpoint_name: str
    variant_name: str
    function_names: dict[str, pulumi.Input[str]]
    api_name: pulumi.Input[str]
    api_stage: str
    training_metrics: list[str]
    alarms: AlarmsConfig
    budget: BudgetConfig
    cost_tag: tuple[str, str]
    alarm_topic_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    capture_uri: pulumi.Input[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]
    pipeline_name: pulumi.Input[str]
    pipeline_arn: pulumi.Input[str]
    functions: FunctionSettings


class Monitoring(pulumi.ComponentResource):
    """The dashboard, the failure alarms and the budget of one stack."""

    dashboard: aws.cloudwatch.Dashboard
    alarms: list[aws.cloudwatch.MetricAlarm]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._name = name
        self._args = args
        self.drift_function = self._drift_monitor()
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{args.stack.name_prefix}-ml-platform",
            dashboard_body=pulumi.Output.json_dumps(self._dashboard()),
            opts=self._child(),
        )
        self.alarms = [*self._function_alarms(), self._api_alarm(), *self._drift_alarms()]
        self._pipeline_failures()
        self.budget = self._budget() if args.budget.monthly_usd is not None else None
        self.register_outputs({"dashboardName": self.dashboard.dashboard_name})

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- dashboard -------------------------------------------------------------------------------------

    def _endpoint_metric(self, namespace: str, metric: str, stat: str) -> list[Any]:
        args = self._args
        return [
            namespace,
            metric,
            "EndpointName",
            args.endpoint_name,
            "VariantName",
            args.variant_name,
            {"stat": stat},
        ]

    def _widget(self, title: str, metrics: list[list[Any]], **properties: Any) -> dict[str, Any]:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": self._args.stack.region,
                "period": PERIOD,
                "view": "timeSeries",
                "metrics": metrics,
                **properties,
            },
        }

    def _model_server_widget(self) -> dict[str, Any]:
        """The model server's own figures (its EMF lines, handlers/serving/metrics.py): latency per
        request and per forward pass, and how many requests and rows share a forward pass."""
        rows = []
        for metric, stat, label, axis in (
            ("ServerLatencyP50", "Average", "request p50 (ms)", "left"),
            ("ServerLatencyP99", "Maximum", "request p99, slowest worker (ms)", "left"),
            ("ForwardLatencyP99", "Maximum", "forward pass p99, slowest worker (ms)", "left"),
            ("MeanBatchRequests", "Average", "requests per forward pass", "right"),
            ("MeanBatchRows", "Average", "rows per forward pass", "right"),
        ):
            row = self._endpoint_metric(METRICS_NAMESPACE, metric, stat)
            row[-1] = {"stat": stat, "label": label, "yAxis": axis}
            rows.append(row)
        return self._widget("Model server: latency and batch size", rows)

    def _dashboard(self) -> dict[str, Any]:
        args = self._args
        endpoint = self._endpoint_metric
        functions = args.function_names
        training_searches = [
            [
                {
                    "expression": f"SEARCH('{{{TRAINING_JOBS},Host,TrainingJobName}} "
                    f"MetricName=\"{metric}\"', 'Average', {PERIOD})",
                    "id": f"t{index}",
                    "label": metric,
                }
            ]
            for index, metric in enumerate(args.training_metrics)
        ]
        return {
            "widgets": [
                self._widget(
                    "Endpoint invocations and errors",
                    [
                        endpoint(SAGEMAKER, "Invocations", "Sum"),
                        endpoint(SAGEMAKER, "Invocation4XXErrors", "Sum"),
                        endpoint(SAGEMAKER, "Invocation5XXErrors", "Sum"),
                    ],
                ),
                self._widget(
                    "Model and overhead latency (microseconds)",
                    [
                        endpoint(SAGEMAKER, "ModelLatency", "p50"),
                        endpoint(SAGEMAKER, "ModelLatency", "p99"),
                        endpoint(SAGEMAKER, "OverheadLatency", "p50"),
                        endpoint(SAGEMAKER, "OverheadLatency", "p99"),
                    ],
                ),
                self._model_server_widget(),
                self._widget(
                    "Instances: CPU, GPU, memory (%) and count",
                    [
                        endpoint(ENDPOINT_INSTANCES, "CPUUtilization", "Average"),
                        endpoint(ENDPOINT_INSTANCES, "GPUUtilization", "Average"),
                        endpoint(ENDPOINT_INSTANCES, "MemoryUtilization", "Average"),
                        endpoint(ENDPOINT_INSTANCES, "GPUMemoryUtilization", "Average"),
                        # One CPU datapoint per instance and period: the sample count is the fleet size.
                        [
                            *endpoint(ENDPOINT_INSTANCES, "CPUUtilization", "SampleCount")[:-1],
                            {"stat": "SampleCount", "label": "instances (samples per period)"},
                        ],
                    ],
                ),
                self._widget(
                    "Lambda duration, errors, throttles",
                    [
                        [
                            "AWS/Lambda",
                            metric,
                            "FunctionName",
                            function_name,
                            {"stat": stat, "label": f"{key} {metric}"},
                        ]
                        for key, function_name in functions.items()
                        for metric, stat in (("Duration", "p99"), ("Errors", "Sum"), ("Throttles", "Sum"))
                    ],
                ),
                self._widget(
                    "API Gateway 4xx, 5xx, latency",
                    [
                        [
                            "AWS/ApiGateway",
                            metric,
                            "ApiName",
                            args.api_name,
                            "Stage",
                            args.api_stage,
                            {"stat": stat},
                        ]
                        for metric, stat in (("4XXError", "Sum"), ("5XXError", "Sum"), ("Latency", "p99"))
                    ],
                ),
                self._widget("Training metrics", training_searches),
                self._widget(
                    "Drift: prediction confidence and feature PSI",
                    [
                        endpoint(METRICS_NAMESPACE, "MeanConfidence", "Average"),
                        endpoint(METRICS_NAMESPACE, "MaxFeaturePSI", "Maximum"),
                        endpoint(METRICS_NAMESPACE, "CapturedRecords", "Sum"),
                    ],
                ),
                self._widget(
                    "Deployments",
                    [
                        [METRICS_NAMESPACE, name, "EndpointName", args.endpoint_name, {"stat": "Sum"}]
                        for name in ("DeploymentSucceeded", "DeploymentFailed")
                    ],
                ),
            ]
        }

    # --- alarms ----------------------------------------------------------------------------------------

    def _alarm(self, key: str, description: str, **settings: Any) -> aws.cloudwatch.MetricAlarm:
        topic = self._args.alarm_topic_arn
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}-alarm",
            name=f"{self._args.stack.name_prefix}-{key}",
            alarm_description=f"{description} (what to do: docs/operations.md)",
            period=PERIOD,
            evaluation_periods=1,
            treat_missing_data="notBreaching",
            alarm_actions=[topic],
            ok_actions=[topic],
            actions_enabled=True,
            opts=self._child(),
            **settings,
        )

    def _function_alarms(self) -> list[aws.cloudwatch.MetricAlarm]:
        alarms = []
        watched = {**self._args.function_names, "drift-monitor": self.drift_function.name}
        for key, function_name in watched.items():
            for metric in ("Errors", "Throttles"):
                alarms.append(
                    self._alarm(
                        f"{key}-{metric.lower()}",
                        f"The {key} function reports {metric.lower()}",
                        namespace="AWS/Lambda",
                        metric_name=metric,
                        dimensions={"FunctionName": function_name},
                        statistic="Sum",
                        threshold=0,
                        comparison_operator="GreaterThanThreshold",
                    )
                )
        return alarms

    def _api_alarm(self) -> aws.cloudwatch.MetricAlarm:
        args = self._args
        return self._alarm(
            "api-5xx",
            "The prediction API answers with server errors",
            namespace="AWS/ApiGateway",
            metric_name="5XXError",
            dimensions={"ApiName": args.api_name, "Stage": args.api_stage},
            statistic="Sum",
            threshold=0,
            comparison_operator="GreaterThanThreshold",
        )

    def _drift_alarms(self) -> list[aws.cloudwatch.MetricAlarm]:
        args = self._args
        dimensions = {"EndpointName": args.endpoint_name, "VariantName": args.variant_name}
        return [
            self._alarm(
                "feature-drift",
                f"A feature's PSI against the training baseline is above {args.alarms.drift_psi}",
                namespace=METRICS_NAMESPACE,
                metric_name="MaxFeaturePSI",
                dimensions=dimensions,
                statistic="Maximum",
                threshold=args.alarms.drift_psi,
                comparison_operator="GreaterThanThreshold",
            ),
            self._alarm(
                "low-confidence",
                f"Mean prediction confidence fell below {args.alarms.confidence_retrain}: retraining starts",
                namespace=METRICS_NAMESPACE,
                metric_name="MeanConfidence",
                dimensions=dimensions,
                statistic="Average",
                threshold=args.alarms.confidence_retrain,
                comparison_operator="LessThanThreshold",
            ),
        ]

    def _pipeline_failures(self) -> None:
        """A failed training pipeline execution notifies the alert topic (EventBridge, no metric)."""
        args = self._args
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-pipeline-failed",
            name=f"{args.stack.name_prefix}-training-failed",
            description="A training pipeline execution failed",
            event_pattern=pulumi.Output.json_dumps(
                {
                    "source": ["aws.sagemaker"],
                    "detail-type": ["SageMaker Model Building Pipeline Execution Status Change"],
                    "detail": {
                        "currentPipelineExecutionStatus": ["Failed"],
                        "pipelineArn": [args.pipeline_arn],
                    },
                }
            ),
            opts=self._child(),
        )
        aws.cloudwatch.EventTarget(
            f"{self._name}-pipeline-failed-target",
            rule=rule.name,
            arn=args.alarm_topic_arn,
            opts=self._child(),
        )

    # --- drift -------------------------------------------------------------------------------------------

    def _drift_monitor(self) -> aws.lambda_.Function:
        """The scheduled drift check: captured traffic vs the training baseline; may start retraining."""
        args = self._args
        functions = FunctionBuilder(self, self._name, args.functions)
        baseline_uri = pulumi.Output.concat("s3://", args.bucket_names["artifacts"], "/", BASELINE_KEY)
        function = functions.function(
            "drift-monitor",
            handler=HANDLER_ENTRYPOINTS["monitoring"],
            description="Daily drift check of the endpoint's captured traffic; starts retraining on drift",
            memory_mb=512,
            timeout_seconds=300,
            reserved_concurrency=1,
            environment={
                "POWERTOOLS_SERVICE_NAME": "drift-monitor",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                drift.ENV_ENDPOINT: args.endpoint_name,
                drift.ENV_CAPTURE_URI: args.capture_uri,
                drift.ENV_BASELINE_URI: baseline_uri,
                drift.ENV_PIPELINE: args.pipeline_name,
                drift.ENV_ALERT_TOPIC: args.alarm_topic_arn,
                drift.ENV_DRIFT_PSI: str(args.alarms.drift_psi),
                drift.ENV_CONFIDENCE_WARN: str(args.alarms.confidence_warn),
                drift.ENV_CONFIDENCE_RETRAIN: str(args.alarms.confidence_retrain),
                drift.ENV_WINDOW_HOURS: str(DRIFT_WINDOW_HOURS),
            },
            statements=self._drift_statements(),
        )
        # The schedule invokes it asynchronously: a check that fails after its retries alerts.
        aws.lambda_.FunctionEventInvokeConfig(
            f"{self._name}-drift-monitor-async",
            function_name=function.name,
            maximum_retry_attempts=DRIFT_ASYNC_RETRIES,
            destination_config={"on_failure": {"destination": args.alarm_topic_arn}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        functions.event_trigger(
            "drift-schedule",
            f"{args.stack.name_prefix}-drift-schedule",
            "Runs the drift check on the last day of captured traffic",
            function,
            schedule=DRIFT_SCHEDULE,
        )
        return function

    def _drift_statements(self) -> list[dict[str, object]]:
        args = self._args
        raw = args.bucket_arns["raw"]
        return [
            {
                "Sid": "ListCapturedTraffic",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": raw,
                "Condition": {"StringLike": {"s3:prefix": ["capture/*"]}},
            },
            {
                "Sid": "ReadCapturedTrafficAndBaseline",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [
                    pulumi.Output.concat(raw, "/capture/*"),
                    pulumi.Output.concat(args.bucket_arns["artifacts"], "/", BASELINE_KEY),
                ],
            },
            {
                # A version without a baseline gets one built from its first captured requests,
                # written once (conditional put) where the deployer publishes baselines.
                "Sid": "StoreCapturedBaseline",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(args.bucket_arns["artifacts"], "/", BASELINE_KEY),
            },
            {
                # Captured data is encrypted with the stack key, and so is the alert topic.
                "Sid": "UseStackKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": args.kms_key_arn,
            },
            {
                # PutMetricData has no resource-level permissions: the namespace condition scopes it.
                "Sid": "PublishDriftMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            },
            {
                "Sid": "StartRetraining",
                "Effect": "Allow",
                "Action": ["sagemaker:StartPipelineExecution", "sagemaker:ListPipelineExecutions"],
                "Resource": args.pipeline_arn,
            },
            {
                "Sid": "Alert",
                "Effect": "Allow",
                "Action": "sns:Publish",
                "Resource": args.alarm_topic_arn,
            },
        ]

    # --- budget ----------------------------------------------------------------------------------------

    def _budget(self) -> aws.budgets.Budget:
        args = self._args
        tag_key, tag_value = args.cost_tag
        subscribers: dict[str, Any] = {"subscriber_sns_topic_arns": [args.alarm_topic_arn]}
        if args.budget.alert_email:
            subscribers["subscriber_email_addresses"] = [args.budget.alert_email]
        return aws.budgets.Budget(
            f"{self._name}-budget",
            name=f"{args.stack.name_prefix}-monthly",
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.budget.monthly_usd:.2f}",
            limit_unit="USD",
            # Only this stack's resources: they all carry its cost-allocation tag.
            cost_filters=[{"name": "TagKeyValue", "values": [f"user:{tag_key}${tag_value}"]}],
            notifications=[
                aws.budgets.BudgetNotificationArgs(
                    comparison_operator="GREATER_THAN",
                    threshold=percent,
                    threshold_type="PERCENTAGE",
                    notification_type=kind,
                    **subscribers,
                )
                for kind, percent in BUDGET_THRESHOLDS
            ],
            opts=self._child(),
        )
