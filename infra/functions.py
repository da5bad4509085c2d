"""Lambda functions the way every component of the stack deploys them.

One code zip (the handlers, built at program time) and one powertools layer serve every function.
Each function gets its own role with an inline policy only, its own log group (created first, with
retention and the stack key), X-Ray tracing, JSON logs, reserved concurrency and an encrypted
environment without secrets.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.packaging import (
    DEFAULT_OUT,
    LAMBDA_RUNTIME,
    LAYER_LAYOUT_VERSION,
    build_handlers_zip,
    build_layer_zip,
)
from infra.iam import policy_document, service_assume_role_policy

# handlers/packaging.py downloads the layer for manylinux2014_x86_64: the functions must match it.
ARCHITECTURE = "x86_64"
LOG_LEVEL = "INFO"
# The layer zip is cached per powertools version: building it downloads from the package index.
LAYER_CACHE_DIR = DEFAULT_OUT / "layer-cache"


@dataclass(frozen=True)
class FunctionSettings:
    """What every function of the stack shares."""

    name_prefix: str
    account_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    code: pulumi.Archive
    code_hash: str
    layer_arn: pulumi.Input[str]


def handlers_code() -> tuple[pulumi.Archive, str]:
    """The handlers zip (deterministic, so an unchanged build is no change) and its hash."""
    handlers_zip = build_handlers_zip()
    assert handlers_zip.path is not None
    return pulumi.FileArchive(str(handlers_zip.path)), source_code_hash(handlers_zip.path)


def source_code_hash(path: Path) -> str:
    """What Lambda reports as CodeSha256: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def cached_layer_name() -> str:
    """The cached layer zip's name: one per powertools version, runtime, platform and layout."""
    version = importlib.metadata.version("aws-lambda-powertools")
    return f"powertools-{version}-{LAMBDA_RUNTIME}-{ARCHITECTURE}-v{LAYER_LAYOUT_VERSION}.zip"


def powertools_layer_zip(cache_dir: Path | None = None) -> Path:
    """The powertools layer zip, built once per powertools version and reused afterwards.

    ``build_layer_zip`` downloads from the package index (10 s or more) and always rebuilds, so
    every ``pulumi preview`` and offline plan would pay for it. The cached zip is keyed by the
    powertools version installed; delete the folder to force a rebuild.
    """
    folder = cache_dir or LAYER_CACHE_DIR
    cached = folder / cached_layer_name()
    if cached.is_file():
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        artifact = build_layer_zip(Path(scratch))
        if artifact.note.startswith("copied"):
            pulumi.log.warn(f"powertools layer {artifact.note}; check it matches Lambda's platform")
        assert artifact.path is not None
        # Built aside and renamed into place: a concurrent run never reads a half-written zip.
        artifact.path.replace(cached)
    return cached


def powertools_layer(
    name: str, name_prefix: str, configured_arn: str | None, opts: pulumi.ResourceOptions
) -> pulumi.Input[str]:
    """The configured layer ARN, else our own layer version built from the cached zip."""
    if configured_arn:
        return configured_arn
    path = powertools_layer_zip()
    layer = aws.lambda_.LayerVersion(
        name,
        layer_name=f"{name_prefix}-powertools",
        description="aws-lambda-powertools[parser,tracer] for the platform's functions",
        code=pulumi.FileArchive(str(path)),
        source_code_hash=source_code_hash(path),
        compatible_runtimes=[LAMBDA_RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        opts=opts,
    )
    return layer.arn


class FunctionBuilder:
    """Builds functions, roles and log groups as children of one component."""

    def __init__(self, parent: pulumi.Resource, resource_prefix: str, settings: FunctionSettings) -> None:
        self._parent = parent
        self._prefix = resource_prefix
        self.settings = settings

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self._parent, **kwargs)

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
            code=settings.code,
            source_code_hash=settings.code_hash,
            layers=[settings.layer_arn],
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
        aws.cloudwatch.EventTarget(
            f"{self._prefix}-{key}-target",
            rule=rule.name,
            arn=function.arn,
            retry_policy={"maximum_retry_attempts": 3, "maximum_event_age_in_seconds": 3600},
            opts=self._child(depends_on=[permission]),
        )
        return rule
