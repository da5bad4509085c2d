"""Lambda functions the way every component of the stack deploys them.

Every function runs the stack's one code zip and layer (:mod:`infra.lambda_code`). Each gets its
own role with an inline policy only, its own log group (created first, with retention and the
stack key), X-Ray tracing, JSON logs, reserved concurrency and an encrypted environment without
secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document, service_assume_role_policy
from infra.lambda_code import ARCHITECTURE, LambdaCode
from infra.lambda_package import LAMBDA_RUNTIME

LOG_LEVEL = "INFO"


@dataclass(frozen=True)
class FunctionSettings:
    """What every function of the stack shares."""

    name_prefix: str
    account_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    code: LambdaCode


class FunctionBuilder:
    """Builds functions, roles and log groups as children of one component."""

    def __init__(
        self,
        parent: pulumi.Resource,
        resource_prefix: str,
        settings: FunctionSettings,
        aliases: Sequence[pulumi.Alias] = (),
    ) -> None:
        self._parent = parent
        self._prefix = resource_prefix
        self._aliases = list(aliases)  # where the children were declared before, if they moved
        self.settings = settings
        self.triggers: list[aws.cloudwatch.EventTarget] = []  # every event_trigger's target, in order

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self._parent, aliases=self._aliases or None, **kwargs)

    def log_group(self, key: str, log_group_name: pulumi.Input[str]) -> aws.cloudwatch.LogGroup:
        """A log group created before its writer, so it is never auto-created without retention or KMS."""
        return aws.cloudwatch.LogGroup(
            f"{self._prefix}-{key}-logs",
            name=log_group_name,
            retention_in_days=self.settings.log_retention_days,
            kms_key_id=self.settings.kms_key_arn,
            opts=self._child(),
        )

    @staticmethod
    def log_statements(group: aws.cloudwatch.LogGroup) -> list[dict[str, object]]:
        return [
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
            },
            {
                # X-Ray trace segments have no resource-level permissions: "*" is the only resource.
                "Sid": "WriteTraces",
                "Effect": "Allow",
                "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                "Resource": "*",
            },
        ]

    def role(
        self, key: str, description: str, statements: list[dict[str, object]]
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        role = aws.iam.Role(
            f"{self._prefix}-{key}-role",
            name=f"{self.settings.name_prefix}-{key}",
            description=description,
            assume_role_policy=service_assume_role_policy("lambda.amazonaws.com", self.settings.account_id),
            opts=self._child(),
        )
        policy = aws.iam.RolePolicy(
            f"{self._prefix}-{key}-policy",
            role=role.id,
            policy=policy_document(*statements),
            opts=self._child(),
        )
        return role, policy

    def function(
        self,
        key: str,
        *,
        handler: str,
        description: str,
        memory_mb: int,
        timeout_seconds: int,
        reserved_concurrency: int,
        environment: dict[str, pulumi.Input[str]],
        statements: list[dict[str, object]],
    ) -> aws.lambda_.Function:
        """A function with its own role (inline policy only), log group and X-Ray tracing."""
        settings = self.settings
        function_name = f"{settings.name_prefix}-{key}"
        group = self.log_group(key, f"/aws/lambda/{function_name}")
        role, policy = self.role(key, description, [*statements, *self.log_statements(group)])
        return aws.lambda_.Function(
            f"{self._prefix}-{key}",
            name=function_name,
            description=description,
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            architectures=[ARCHITECTURE],
            handler=handler,
            code=settings.code.archive,
            source_code_hash=settings.code.code_hash,
            layers=[settings.code.layer_arn],
            memory_size=memory_mb,
            timeout=timeout_seconds,
            reserved_concurrent_executions=reserved_concurrency,
            tracing_config={"mode": "Active"},
            logging_config={
                "log_format": "JSON",
                "log_group": group.name,
                "application_log_level": LOG_LEVEL,
                "system_log_level": "WARN",
            },
            environment={"variables": {"LOG_LEVEL": LOG_LEVEL, **environment}},
            kms_key_arn=settings.kms_key_arn,
            # The first invocation needs its permissions and must not auto-create an unencrypted log group.
            opts=self._child(depends_on=[policy, group]),
        )

    def event_trigger(
        self,
        key: str,
        rule_name: str,
        description: str,
        function: aws.lambda_.Function,
        *,
        pattern: pulumi.Input[str] | None = None,
        schedule: str | None = None,
    ) -> aws.cloudwatch.EventRule:
        """An EventBridge rule (event pattern or schedule) that invokes ``function``; only it may."""
        rule = aws.cloudwatch.EventRule(
            f"{self._prefix}-{key}",
            name=rule_name,
            description=description,
            event_pattern=pattern,
            schedule_expression=schedule,
            opts=self._child(),
        )
        permission = aws.lambda_.Permission(
            f"{self._prefix}-{key}-permission",
            function=function.name,
            action="lambda:InvokeFunction",
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=self._child(),
        )
        target = aws.cloudwatch.EventTarget(
            f"{self._prefix}-{key}-target",
            rule=rule.name,
            arn=function.arn,
            retry_policy={"maximum_retry_attempts": 3, "maximum_event_age_in_seconds": 3600},
            opts=self._child(depends_on=[permission]),
        )
        self.triggers.append(target)
        return rule
