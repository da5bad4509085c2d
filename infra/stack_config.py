"""The typed configuration of one stack: everything a stack can set, validated before any resource.

One schema serves three readers: the Pulumi program (from Pulumi config), the CLI and local mode
(from the same ``Pulumi.<stack>.yaml`` files, without Pulumi). Keys are camelCase, as Pulumi config
keys are; every object lives under the project namespace ``ml-platform:``, and the region under
``aws:region``.

Validation has two layers. Pydantic checks each field (types, ranges, allowed values, unknown keys);
:func:`_cross_field_issues` then checks the rules that span fields or depend on the environment
(min <= max instances, prod needs two instances, a GPU endpoint needs a GPU instance...). Both end in
the same :class:`ConfigIssue` (key, value, what is allowed), so every message names all three.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from handlers.common.aws_clients import profile_free_session
from handlers.common.contracts import DEFAULT_PROMOTION_MARGIN
from handlers.common.instance_types import DEFAULT_INSTANCE_TYPE, GPU_INSTANCE_FAMILIES, instance_family

PROJECT = "ml-platform"
REGION_KEY = "aws:region"

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip
PROD_MIN_LOG_RETENTION_DAYS = 365
PROD_MIN_INSTANCES = 2
PROD_MIN_BAKING_SECONDS = 300
MAX_TRAINING_RUNTIME_SECONDS = 28 * 24 * 3600  # SageMaker's ceiling for a training job
# SageMaker's MaximumExecutionTimeoutInSeconds is at most 8 h; keep 30 min for provisioning.
DEPLOYMENT_TIMEOUT_CEILING_SECONDS = 8 * 3600
PROVISIONING_ALLOWANCE_SECONDS = 1800
MAX_DEPLOYMENT_WAIT_SECONDS = DEPLOYMENT_TIMEOUT_CEILING_SECONDS - PROVISIONING_ALLOWANCE_SECONDS

INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
InstanceType = Annotated[str, StringConstraints(pattern=INSTANCE_TYPE_PATTERN)]
PositiveInt = Annotated[int, Field(gt=0)]
Percent = Annotated[float, Field(gt=0, le=100)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class DeploymentStrategy(StrEnum):
    ALL_AT_ONCE = "all-at-once"
    CANARY = "canary"
    LINEAR = "linear"


class ApiAuth(StrEnum):
    API_KEY = "api-key"
    IAM = "iam"


class ServingContainer(StrEnum):
    """What serves a model: the platform's own model server image, or SageMaker's PyTorch DLC."""

    PLATFORM = "platform"
    SAGEMAKER_DLC = "sagemaker-dlc"


class ServingPrecision(StrEnum):
    """The dtype the platform's model server runs a model in (``MODEL_SERVER_PRECISION``)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class RollbackAlarm(StrEnum):
    ERROR_RATE_5XX = "5xx-rate"
    MODEL_LATENCY_P99 = "model-latency-p99"
    ERROR_RATE_4XX = "4xx-rate"


class _Section(BaseModel):
    """Every section: camelCase keys, unknown keys rejected, frozen once built."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class DataConfig(_Section):
    raw_retention_days: PositiveInt | None = None  # None: raw data never expires
    processed_noncurrent_days: PositiveInt = 30
    abort_incomplete_upload_days: PositiveInt = 7
    access_log_retention_days: PositiveInt = 365


# The tasks training_jobs/tasks.py knows (a unit test keeps the two lists equal).
TrainingTask = Literal["digits", "diabetes", "spam"]


def _inside_project(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError("must be a relative path inside the project (no leading / and no ..)")
    return value


# A relative path inside the project (no "..", no absolute path): what the code bundle is built from.
ProjectPath = Annotated[str, StringConstraints(pattern=r"^[\w.\-/]+$"), AfterValidator(_inside_project)]
ScriptName = Annotated[str, StringConstraints(pattern=r"^[\w\-/]+\.py$")]
# An ECR image URI (account.dkr.ecr.region.amazonaws.com/name:tag or @sha256:...).
ImageUri = Annotated[
    str,
    StringConstraints(
        pattern=r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})$"
    ),
]
HyperparameterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,255}$")]
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^,\n]+$")]


class TrainingSourceConfig(_Section):
    """A team's training code: a folder of the project and the script SageMaker runs from it
    (script mode: ``python <entryPoint> --name value ...`` under the training container contract).
    ``requirements.txt`` in the folder is installed before the script starts."""

    dir: ProjectPath
    entry_point: ScriptName = "train.py"
    # The team's own preparation / evaluation scripts in the same folder; unset, the platform's
    # generic preparer (training.dataset) and evaluator run.
    prepare: ScriptName | None = None
    evaluate: ScriptName | None = None


class DatasetConfig(_Section):
    """The declared schema of a team's data, read by the platform's generic preparer."""

    format: Literal["csv", "parquet", "jsonl", "images"] = "csv"
    target: ColumnName | None = None  # tabular: the column to predict
    features: tuple[ColumnName, ...] | None = None  # tabular: None means every other column
    problem: Literal["classification", "regression"] = "classification"
    categorical: tuple[ColumnName, ...] = ()
    text_field: ColumnName = "text"  # jsonl
    label_field: ColumnName = "label"  # jsonl
    # Files `mlctl local up` puts under raw/ (a file or folder of the project): the team's data.
    local_sample: ProjectPath | None = None


class TrainingConfig(_Section):
    # A built-in example (training_jobs/tasks.py); a team's own code comes in `source` or `image`.
    task: TrainingTask = "digits"
    source: TrainingSourceConfig | None = None
    image: ImageUri | None = None
    # Handed to the training script as `--name value` and SM_HPS (SageMaker's hyperparameters).
    hyperparameters: dict[HyperparameterName, str | int | float | bool] = Field(default_factory=dict)
    dataset: DatasetConfig | None = None
    instance_type: InstanceType = DEFAULT_INSTANCE_TYPE
    instance_count: PositiveInt = 1
    use_spot: bool = True
    max_runtime_seconds: Annotated[int, Field(gt=0, le=MAX_TRAINING_RUNTIME_SECONDS)] = 86_400
    max_wait_seconds: Annotated[int, Field(gt=0, le=2 * MAX_TRAINING_RUNTIME_SECONDS)] = 172_800
    schedule: str = "cron(0 3 ? * SUN *)"  # EventBridge schedule expression
    # A plain name: the pipeline reads it from evaluation.json as metrics.<name>.value.
    evaluation_metric: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "accuracy"
    evaluation_threshold: Annotated[float, Field(ge=0)] = 0.9
    # Champion gate: how much worse (absolute, per metric) a new version may be than the served one.
    promotion_margin: Annotated[float, Field(ge=0, le=1)] = DEFAULT_PROMOTION_MARGIN
    network_isolation: bool = True
    inter_container_encryption: bool = True

    @field_validator("schedule")
    @classmethod
    def _schedule_expression(cls, value: str) -> str:
        if not re.fullmatch(r"(cron|rate)\(.+\)", value):
            raise ValueError("must be an EventBridge schedule expression: cron(...) or rate(...)")
        return value

    @property
    def builtin_task(self) -> str | None:
        """The built-in example task this stack trains, or None when the team brings its code."""
        return None if self.source is not None or self.image is not None else self.task


class VariantConfig(_Section):
    name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")]
    weight: Annotated[float, Field(gt=0)] = 1.0
    # SageMaker's shadow variants are refused with the reason, never silently served as a
    # production variant (docs/deployments.md).
    shadow: bool = False

    @field_validator("shadow")
    @classmethod
    def _no_shadow(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "shadow variants are not supported: the champion gate compares a version with the served "
                "one on replayed captured traffic before approval; allowed: false"
            )
        return value


class OffHoursConfig(_Section):
    """Non-prod endpoints: fewer instances outside working hours (Application Auto Scaling
    scheduled actions on every variant). Real-time endpoints cannot go below one instance."""

    scale_down: str = "cron(0 20 ? * MON-FRI *)"
    scale_up: str = "cron(0 7 ? * MON-FRI *)"
    timezone: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_+\-/]*$")] = "UTC"
    instances: PositiveInt = 1

    @field_validator("scale_down", "scale_up")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not re.fullmatch(r"cron\(\S+( \S+){5}\)", value):
            raise ValueError("must be an Application Auto Scaling cron(...) with 6 fields")
        return value


class ServingConfig(_Section):
    instance_type: InstanceType = DEFAULT_INSTANCE_TYPE
    gpu: bool = True  # a GPU endpoint must run on a GPU instance family
    min_instances: PositiveInt = 1
    max_instances: PositiveInt = 2
    target_invocations_per_instance: PositiveInt = 100
    scale_in_cooldown_seconds: Annotated[int, Field(ge=0)] = 300
    scale_out_cooldown_seconds: Annotated[int, Field(ge=0)] = 60
    data_capture_percent: Percent = 100
    variants: Annotated[tuple[VariantConfig, ...], Field(min_length=1)] = (VariantConfig(name="primary"),)
    off_hours: OffHoursConfig | None = None  # non-prod only: scheduled scale-down
    # The platform's model server image (docker/serving-{cpu,gpu}.Dockerfile, the family of
    # instanceType), or SageMaker's PyTorch inference image (docs/deployments.md).
    container: ServingContainer = ServingContainer.PLATFORM
    precision: ServingPrecision = ServingPrecision.FLOAT32
    # A version handed to the deployer at `pulumi up` as its approval event (once per ARN), e.g. one
    # trained elsewhere. Unset: the first approval in the registry creates the endpoint. Either
    # way the deployer owns the endpoint and its autoscaling (docs/deployments.md).
    model_package_arn: (
        Annotated[
            str,
            StringConstraints(pattern=r"^arn:aws[\w-]*:sagemaker:[\w-]+:\d{12}:model-package/[\w-]+/\d+$"),
        ]
        | None
    ) = None


class DeploymentConfig(_Section):
    strategy: DeploymentStrategy = DeploymentStrategy.CANARY
    canary_percent: Annotated[int, Field(ge=1, le=50)] = 10
    linear_step_percent: Annotated[int, Field(ge=1, le=50)] = 25
    baking_seconds: Annotated[int, Field(ge=0, le=3600)] = 600
    termination_wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 120
    rollback_alarms: tuple[RollbackAlarm, ...] = (
        RollbackAlarm.ERROR_RATE_5XX,
        RollbackAlarm.MODEL_LATENCY_P99,
    )


class ApiConfig(_Section):
    auth: ApiAuth = ApiAuth.API_KEY
    throttle_rate_per_second: PositiveInt = 50
    throttle_burst: PositiveInt = 100
    waf: bool = False
    lambda_memory_mb: Annotated[int, Field(ge=128, le=10240)] = 512
    lambda_timeout_seconds: Annotated[int, Field(ge=1, le=28)] = 25  # below API Gateway's 29 s
    reserved_concurrency: PositiveInt = 50
    max_body_bytes: Annotated[int, Field(ge=1024, le=6 * 1024 * 1024)] = 1024 * 1024  # Lambda's payload cap
    # None: build and publish our own powertools layer; an ARN: use that (e.g. the public one).
    powertools_layer_arn: (
        Annotated[str, StringConstraints(pattern=r"^arn:aws[\w-]*:lambda:[\w-]+:\d{12}:layer:[\w-]+:\d+$")]
        | None
    ) = None


class AlarmsConfig(_Section):
    error_rate_5xx_percent: Percent = Field(default=1.0, alias="errorRate5xxPercent")
    model_latency_p99_ms: PositiveInt = 500
    drift_psi: Annotated[float, Field(gt=0)] = 0.2
    confidence_warn: Fraction = 0.88
    confidence_retrain: Fraction = 0.80
    notification_email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None


class BudgetConfig(_Section):
    monthly_usd: Annotated[float, Field(gt=0)] | None = None
    alert_email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None


TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\w .:/=+\-@]+$")]
TagValue = Annotated[str, StringConstraints(max_length=256, pattern=r"^[\w .:/=+\-@]*$")]


class StackConfig(_Section):
    """Everything one stack can set. Built by :func:`parse_stack_config`, never by hand in code."""

    environment: Environment
    region: str
    name_prefix: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")]
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    api: ApiConfig = ApiConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    log_retention_days: int = 30
    budget: BudgetConfig = BudgetConfig()

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in known_regions():
            raise ValueError(f"unknown AWS region; allowed: {', '.join(known_regions())}")
        return value

    @field_validator("tags")
    @classmethod
    def _user_tag_keys(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(key for key in value if key.lower().startswith(("aws:", "ml-platform:")))
        if reserved:
            raise ValueError(
                f"tag keys {reserved} use a reserved prefix; allowed: keys not starting with "
                "aws: or ml-platform:"
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"not a CloudWatch Logs retention period; allowed: {LOG_RETENTION_DAYS}")
        return value

    @property
    def is_prod(self) -> bool:
        return self.environment is Environment.PROD

    @property
    def endpoint_name(self) -> str:
        """The serving endpoint's name: fixed, so the API and monitoring can refer to it by name."""
        return f"{self.name_prefix}-endpoint"

    def resource_tags(self) -> dict[str, str]:
        """Tags on every resource: the user's plus the cost-allocation tags budgets filter on."""
        return {
            **self.tags,
            "ml-platform:environment": self.environment.value,
            "ml-platform:stack": self.name_prefix,
        }


@dataclass(frozen=True)
class ConfigIssue:
    """One rejected setting: the key as it is written in Pulumi config, the value, what is allowed."""

    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}: {self.allowed}"


class StackConfigError(ValueError):
    """A stack's configuration was rejected; ``issues`` lists every bad key."""

    def __init__(self, source: str, issues: Iterable[ConfigIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"invalid stack configuration ({source}):\n{lines}")


class StackFileError(StackConfigError):
    """The stack file cannot be read as YAML: one line naming the file and where it breaks."""

    def __init__(self, source: str, problem: str) -> None:
        ValueError.__init__(self, f"{source} is not valid YAML: {problem}")
        self.source = source
        self.issues = ()


class UnknownStackError(LookupError):
    """No ``Pulumi.<stack>.yaml`` exists for the requested stack."""

    def __init__(self, stack: str, available: Iterable[str]) -> None:
        self.stack = stack
        self.available = tuple(available)
        choices = ", ".join(self.available) or "none"
        super().__init__(f"unknown stack {stack!r}: no Pulumi.{stack}.yaml; available stacks: {choices}")


@cache
def known_regions() -> tuple[str, ...]:
    """Regions where SageMaker runs, from botocore's bundled endpoint data (no network, no profile)."""
    return tuple(profile_free_session().get_available_regions("sagemaker"))


def parse_stack_config(values: Mapping[str, Any], source: str = "stack config") -> StackConfig:
    """Build a :class:`StackConfig` from Pulumi-style config (``ml-platform:key`` -> value).

    Values may be typed (from YAML) or strings (as the Pulumi engine hands them to a program:
    objects and arrays JSON-encoded). Raises :class:`StackConfigError` naming every bad key.
    """
    raw = _strip_namespace(values)
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise StackConfigError(source, _issues_from_pydantic(exc, raw)) from None
    issues = list(_cross_field_issues(config))
    if issues:
        raise StackConfigError(source, issues)
    return config


def _strip_namespace(values: Mapping[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    unknown_namespaces = []
    for key, value in values.items():
        namespace, _, name = key.partition(":")
        if key == REGION_KEY:
            raw["region"] = value
        elif namespace == PROJECT and name:
            raw[name] = _decode(value)
        elif namespace not in {"aws", "pulumi"}:
            unknown_namespaces.append(key)
    if unknown_namespaces:
        raw["__unknown__"] = unknown_namespaces  # reported as an unknown key by pydantic
    return raw


def _decode(value: Any) -> Any:
    """Pulumi hands structured config to a program as JSON text; YAML hands it as objects."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _key_of(location: tuple[int | str, ...]) -> str:
    top, *rest = location or ("",)
    if top == "region":
        key = REGION_KEY
    else:
        key = f"{PROJECT}:{top}"
    for part in rest:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key


def _issues_from_pydantic(exc: ValidationError, raw: Mapping[str, Any]) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        location = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            issues.append(_unknown_key_issue(location, error["input"]))
            continue
        if error["type"] == "missing":
            issues.append(ConfigIssue(_key_of(location), None, "required key is missing"))
            continue
        message = error["msg"].removeprefix("Value error, ")
        issues.append(ConfigIssue(_key_of(location), error.get("input"), message))
    return issues


def _unknown_key_issue(location: tuple[int | str, ...], value: Any) -> ConfigIssue:
    if location == ("__unknown__",):
        return ConfigIssue(
            ", ".join(value), "(set)", f"unknown config namespace; allowed: '{PROJECT}:<key>', 'aws:region'"
        )
    model: type[BaseModel] = StackConfig
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[_snake(str(part))].annotation
        nested = _model_in(annotation)
        if nested is None:
            break
        model = nested
    allowed = sorted(field.alias or name for name, field in model.model_fields.items())
    return ConfigIssue(_key_of(location), value, f"unknown key; allowed keys here: {', '.join(allowed)}")


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _cross_field_issues(config: StackConfig) -> Iterable[ConfigIssue]:
    """Rules spanning several fields or depending on the environment."""
    yield from _serving_issues(config)
    yield from _training_issues(config.training)
    yield from _deployment_issues(config)
    yield from _alarm_issues(config.alarms)
    if config.is_prod:
        yield from _prod_issues(config)


def _serving_issues(config: StackConfig) -> Iterable[ConfigIssue]:
    serving = config.serving
    if serving.min_instances > serving.max_instances:
        yield ConfigIssue(
            f"{PROJECT}:serving.minInstances",
            serving.min_instances,
            f"must be <= serving.maxInstances ({serving.max_instances})",
        )
    if serving.gpu and instance_family(serving.instance_type) not in GPU_INSTANCE_FAMILIES:
        yield ConfigIssue(
            f"{PROJECT}:serving.instanceType",
            serving.instance_type,
            "a GPU endpoint (serving.gpu: true) needs a GPU instance family: "
            + ", ".join(GPU_INSTANCE_FAMILIES),
        )
    names = [variant.name for variant in serving.variants]
    if len(set(names)) != len(names):
        yield ConfigIssue(f"{PROJECT}:serving.variants", names, "variant names must be unique")
    if (
        serving.container is ServingContainer.SAGEMAKER_DLC
        and serving.precision is not ServingPrecision.FLOAT32
    ):
        yield ConfigIssue(
            f"{PROJECT}:serving.precision",
            serving.precision.value,
            "SageMaker's PyTorch image ignores it (serving.container: sagemaker-dlc): "
            "allowed with it: float32; float16 and bfloat16 need serving.container: platform",
        )
    if serving.off_hours is not None and serving.off_hours.instances > serving.min_instances:
        yield ConfigIssue(
            f"{PROJECT}:serving.offHours.instances",
            serving.off_hours.instances,
            f"must be <= serving.minInstances ({serving.min_instances}): off hours scale down",
        )


def _training_issues(training: TrainingConfig) -> Iterable[ConfigIssue]:
    yield from _training_code_issues(training)
    if training.use_spot and training.max_wait_seconds < training.max_runtime_seconds:
        yield ConfigIssue(
            f"{PROJECT}:training.maxWaitSeconds",
            training.max_wait_seconds,
            f"with useSpot, must be >= training.maxRuntimeSeconds ({training.max_runtime_seconds})",
        )


def _deployment_issues(config: StackConfig) -> Iterable[ConfigIssue]:
    deployment = config.deployment
    if deployment.strategy is not DeploymentStrategy.ALL_AT_ONCE and len(config.serving.variants) > 1:
        yield ConfigIssue(
            f"{PROJECT}:deployment.strategy",
            deployment.strategy.value,
            "blue/green canary or linear updates need a single variant; A/B variants use 'all-at-once'",
        )
    if deployment_wait_seconds(deployment) > MAX_DEPLOYMENT_WAIT_SECONDS:
        yield ConfigIssue(
            f"{PROJECT}:deployment.bakingSeconds",
            deployment.baking_seconds,
            f"the traffic-shifting steps and waits must fit SageMaker's {MAX_DEPLOYMENT_WAIT_SECONDS} s "
            "deployment limit: fewer or larger steps, or a shorter bake",
        )
    if len(set(deployment.rollback_alarms)) != len(deployment.rollback_alarms):
        yield ConfigIssue(
            f"{PROJECT}:deployment.rollbackAlarms",
            [alarm.value for alarm in deployment.rollback_alarms],
            "each alarm at most once",
        )


def _alarm_issues(alarms: AlarmsConfig) -> Iterable[ConfigIssue]:
    if alarms.confidence_retrain >= alarms.confidence_warn:
        yield ConfigIssue(
            f"{PROJECT}:alarms.confidenceRetrain",
            alarms.confidence_retrain,
            f"must be below alarms.confidenceWarn ({alarms.confidence_warn})",
        )


def _prod_issues(config: StackConfig) -> Iterable[ConfigIssue]:
    if config.serving.off_hours is not None:
        yield ConfigIssue(
            f"{PROJECT}:serving.offHours",
            "set",
            "prod endpoints keep their capacity around the clock: remove it (non-prod stacks only)",
        )
    if config.serving.min_instances < PROD_MIN_INSTANCES:
        yield ConfigIssue(
            f"{PROJECT}:serving.minInstances",
            config.serving.min_instances,
            f"prod endpoints need at least {PROD_MIN_INSTANCES} instances (one per Availability Zone)",
        )
    if not config.serving.gpu:
        yield ConfigIssue(f"{PROJECT}:serving.gpu", False, "prod endpoints serve on GPU: set true")
    deployment = config.deployment
    if deployment.strategy is DeploymentStrategy.ALL_AT_ONCE:
        yield ConfigIssue(
            f"{PROJECT}:deployment.strategy",
            deployment.strategy.value,
            "prod deploys blue/green with traffic shifting: 'canary' or 'linear'",
        )
    if deployment.baking_seconds < PROD_MIN_BAKING_SECONDS:
        yield ConfigIssue(
            f"{PROJECT}:deployment.bakingSeconds",
            deployment.baking_seconds,
            f"prod needs a baking wait of at least {PROD_MIN_BAKING_SECONDS} s",
        )
    required = {RollbackAlarm.ERROR_RATE_5XX, RollbackAlarm.MODEL_LATENCY_P99}
    if not required <= set(deployment.rollback_alarms):
        yield ConfigIssue(
            f"{PROJECT}:deployment.rollbackAlarms",
            [alarm.value for alarm in deployment.rollback_alarms],
            "prod rolls back on at least the '5xx-rate' and 'model-latency-p99' alarms",
        )
    if config.log_retention_days < PROD_MIN_LOG_RETENTION_DAYS:
        yield ConfigIssue(
            f"{PROJECT}:logRetentionDays",
            config.log_retention_days,
            f"prod keeps logs at least {PROD_MIN_LOG_RETENTION_DAYS} days",
        )
    if config.budget.monthly_usd is None:
        yield ConfigIssue(
            f"{PROJECT}:budget.monthlyUsd", None, "prod needs a monthly budget (a positive number)"
        )


def traffic_shift_steps(deployment: DeploymentConfig) -> int:
    """How many baking waits a deployment goes through before all traffic is on the new fleet."""
    if deployment.strategy is DeploymentStrategy.CANARY:
        return 2
    if deployment.strategy is DeploymentStrategy.LINEAR:
        return -(-100 // deployment.linear_step_percent)
    return 1


def deployment_wait_seconds(deployment: DeploymentConfig) -> int:
    return traffic_shift_steps(deployment) * deployment.baking_seconds + deployment.termination_wait_seconds


# --- stack files -----------------------------------------------------------------------------------


def project_root() -> Path:
    """The folder holding ``Pulumi.yaml``: the repository root."""
    return Path(__file__).resolve().parent.parent


def available_stacks(root: Path | None = None) -> list[str]:
    folder = root or project_root()
    return sorted(path.name[len("Pulumi.") : -len(".yaml")] for path in folder.glob("Pulumi.*.yaml"))


def stack_file(stack: str, root: Path | None = None) -> Path:
    folder = root or project_root()
    path = folder / f"Pulumi.{stack}.yaml"
    if not re.fullmatch(r"[\w.-]+", stack) or not path.is_file():
        raise UnknownStackError(stack, available_stacks(folder))
    return path


def read_stack_values(stack: str, root: Path | None = None) -> dict[str, Any]:
    """The ``config:`` mapping of ``Pulumi.<stack>.yaml``, as Pulumi would read it."""
    path = stack_file(stack, root)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StackFileError(path.name, f"{where}{problem}") from None
    values = document.get("config") or {}
    if not isinstance(values, dict):
        raise StackConfigError(path.name, [ConfigIssue("config", values, "must be a mapping of keys")])
    return values


def load_stack_config(stack: str, root: Path | None = None) -> StackConfig:
    """Read and validate ``Pulumi.<stack>.yaml`` without Pulumi (CLI, local mode, tests)."""
    return parse_stack_config(read_stack_values(stack, root), source=f"Pulumi.{stack}.yaml")


def to_pulumi_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Encode YAML values the way the Pulumi engine hands config to a program: all strings."""
    encoded = {}
    for key, value in values.items():
        if isinstance(value, str):
            encoded[key] = value
        elif isinstance(value, bool):
            encoded[key] = "true" if value else "false"
        else:
            encoded[key] = json.dumps(value)
    return encoded


def _training_code_issues(training: TrainingConfig) -> Iterable[ConfigIssue]:
    """A built-in example task, or the team's own code and data: never a mix of the two."""
    own_code = training.builtin_task is None
    if own_code and "task" in training.model_fields_set:
        yield ConfigIssue(
            f"{PROJECT}:training.task",
            training.task,
            "selects a built-in example; remove it when training.source or training.image is set",
        )
    if own_code and training.dataset is None and (training.source is None or training.source.prepare is None):
        yield ConfigIssue(
            f"{PROJECT}:training.dataset",
            None,
            "a team's training code needs its data declared (training.dataset) or its own "
            "preparation script (training.source.prepare)",
        )
    generic_evaluation = training.source is None or training.source.evaluate is None
    tabular = training.dataset is not None and training.dataset.format in ("csv", "parquet")
    if own_code and generic_evaluation and not tabular:
        yield ConfigIssue(
            f"{PROJECT}:training.source.evaluate",
            None,
            "needed unless training.dataset is tabular (csv or parquet): the platform's generic "
            "evaluator scores a team's model on tabular splits only; an evaluation script writes "
            "evaluation.json for any data (docs/bring-your-own-model.md)",
        )
    if training.dataset is not None and training.dataset.format in ("csv", "parquet"):
        if training.dataset.target is None:
            yield ConfigIssue(
                f"{PROJECT}:training.dataset.target", None, "tabular data needs its target column"
            )
    if training.source is not None:
        yield from _source_file_issues(training.source)


def _source_file_issues(source: TrainingSourceConfig) -> Iterable[ConfigIssue]:
    """Each named script must be a file of the source folder (checked before anything is built)."""
    folder = project_root() / source.dir
    if not folder.is_dir():
        yield ConfigIssue(f"{PROJECT}:training.source.dir", source.dir, "must be a folder of the project")
        return
    scripts = {"entryPoint": source.entry_point, "prepare": source.prepare, "evaluate": source.evaluate}
    for key, name in scripts.items():
        if name is not None and not (folder / name).is_file():
            yield ConfigIssue(
                f"{PROJECT}:training.source.{key}",
                name,
                f"must be a file in training.source.dir ({source.dir})",
            )
