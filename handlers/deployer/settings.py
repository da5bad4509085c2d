"""The deployer's settings: the environment the Pulumi program gives it, read and checked.

The variable names are the contract between ``infra/deployer.py``, which sets them, and the
handler, which reads them; both use the constants here. Prod rules mirror the stack config's, so a
function deployed with bad settings refuses to roll anything out (see docs/deployments.md).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.common.contracts import DEFAULT_PROMOTION_MARGIN
from handlers.common.errors import ConfigurationError
from handlers.common.instance_types import DEFAULT_INSTANCE_TYPE, has_gpu

# --- the environment the deployer Lambda reads (the Pulumi component sets these) -------------------
ENV_GROUP = "MODEL_PACKAGE_GROUP"
ENV_ENDPOINT = "ENDPOINT_NAME"
ENV_ROLE = "SAGEMAKER_EXECUTION_ROLE_ARN"
ENV_KMS = "KMS_KEY_ARN"
ENV_VARIANTS = "PRODUCTION_VARIANTS"  # JSON: [{"name": "a", "weight": 1.0}, ...]
ENV_INSTANCE_TYPE = "INSTANCE_TYPE"
ENV_INSTANCE_COUNT = "INITIAL_INSTANCE_COUNT"
ENV_CAPTURE_URI = "DATA_CAPTURE_S3_URI"
ENV_CAPTURE_PERCENT = "DATA_CAPTURE_PERCENT"
ENV_STAGE = "ENVIRONMENT"
ENV_STRATEGY = "DEPLOYMENT_STRATEGY"
ENV_CANARY = "CANARY_PERCENT"
ENV_LINEAR = "LINEAR_STEP_PERCENT"
ENV_BAKING = "BAKING_SECONDS"
ENV_TERMINATION = "TERMINATION_WAIT_SECONDS"
ENV_ALARMS = "ROLLBACK_ALARM_NAMES"
ENV_PROVISIONING = "PROVISIONING_ALLOWANCE_SECONDS"
ENV_RETAIN = "RETAIN_VARIANT_PROPERTIES"
ENV_REGION = "AWS_REGION"  # set by the Lambda runtime
ENV_SERVING_FILES = "SERVING_FILES_S3_URI"  # where a verified version's input schema/baseline go
ENV_MARGIN = "PROMOTION_MARGIN"  # the champion gate's margin for versions approved without it
# Application Auto Scaling, which the deployer owns with the endpoint (handlers/deployer/scaling.py).
ENV_MIN_INSTANCES = "MIN_INSTANCES"
ENV_MAX_INSTANCES = "MAX_INSTANCES"
ENV_TARGET_INVOCATIONS = "TARGET_INVOCATIONS_PER_INSTANCE"
ENV_SCALE_IN_COOLDOWN = "SCALE_IN_COOLDOWN_SECONDS"
ENV_SCALE_OUT_COOLDOWN = "SCALE_OUT_COOLDOWN_SECONDS"
ENV_OFF_HOURS = "OFF_HOURS"  # JSON: {"scaleDown", "scaleUp", "timezone", "instances"}; unset: none
# The images a new model serves with, one per instance family: the stack's serving.container
# (the platform's model server, or SageMaker's PyTorch DLC), resolved by the Pulumi program.
ENV_SERVING_IMAGE_CPU = "SERVING_IMAGE_CPU"
ENV_SERVING_IMAGE_GPU = "SERVING_IMAGE_GPU"
ENV_PRECISION = "SERVING_PRECISION"  # the stack's serving.precision

# In the model container's environment: the dtype the platform's model server runs the model in.
MODEL_SERVER_PRECISION_ENV = "MODEL_SERVER_PRECISION"
PRECISIONS = ("float32", "float16", "bfloat16")
DEFAULT_PRECISION = "float32"
CPU, GPU = "cpu", "gpu"

ALL_AT_ONCE, CANARY, LINEAR = "all-at-once", "canary", "linear"
STRATEGIES = (ALL_AT_ONCE, CANARY, LINEAR)
ROUTING_TYPES = {ALL_AT_ONCE: "ALL_AT_ONCE", CANARY: "CANARY", LINEAR: "LINEAR"}

# SageMaker's bounds (UpdateEndpoint BlueGreenUpdatePolicy / TrafficRoutingConfiguration).
MIN_EXECUTION_TIMEOUT_SECONDS = 600
MAX_EXECUTION_TIMEOUT_SECONDS = 28_800
MAX_WAIT_SECONDS = 3600
DEFAULT_PROVISIONING_ALLOWANCE_SECONDS = 1800  # new GPU instances + container start, with margin
# Prod rules, as infra/stack_config.py enforces them (repeated: the Lambda must not import infra).
PROD = "prod"
PROD_MIN_INSTANCES = 2
PROD_MIN_BAKING_SECONDS = 300
PROD_MIN_ROLLBACK_ALARMS = 2

_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class DeploymentPolicy:
    """How traffic moves to a new config: strategy, sizes, waits and the alarms that roll it back."""

    strategy: str = CANARY
    canary_percent: int = 10
    linear_step_percent: int = 25
    baking_seconds: int = 600
    termination_wait_seconds: int = 120
    rollback_alarms: tuple[str, ...] = ()
    provisioning_allowance_seconds: int = DEFAULT_PROVISIONING_ALLOWANCE_SECONDS


@dataclass(frozen=True)
class Variant:
    """A production variant: its stable name (alarms and autoscaling name it) and its traffic weight."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class OffHours:
    """Non-prod: pin every variant to ``instances`` from ``scale_down`` until ``scale_up`` (cron)."""

    scale_down: str
    scale_up: str
    timezone: str = "UTC"
    instances: int = 1


@dataclass(frozen=True)
class ScalingSettings:
    """Target tracking on invocations per instance, within bounds, for every variant."""

    min_instances: int = 1
    max_instances: int = 2
    target_invocations: int = 100
    scale_in_cooldown_seconds: int = 300
    scale_out_cooldown_seconds: int = 60
    off_hours: OffHours | None = None


def image_family(instance_type: str) -> str:
    """``gpu`` for NVIDIA GPU instance families (the CUDA image), else ``cpu``."""
    return GPU if has_gpu(instance_type) else CPU


@dataclass(frozen=True)
class ServingImages:
    """The serving image for each instance family; a model serves with its endpoint's family's."""

    cpu: str
    gpu: str

    def for_instance_type(self, instance_type: str) -> str:
        """The image for ``instance_type``'s family: never the CUDA image on a CPU instance."""
        return self.gpu if image_family(instance_type) == GPU else self.cpu


@dataclass(frozen=True)
class DeploySettings:
    """Everything a deployment needs besides the model version (normally from the environment)."""

    group: str
    endpoint_name: str
    execution_role_arn: str
    kms_key_arn: str
    region: str
    variants: tuple[Variant, ...] = (Variant("primary"),)
    instance_type: str = DEFAULT_INSTANCE_TYPE
    initial_instance_count: int = 1
    data_capture_uri: str | None = None
    data_capture_percent: int = 100
    stage: str = "dev"
    policy: DeploymentPolicy = DeploymentPolicy()
    retain_variant_properties: bool = True
    serving_files_uri: str | None = None  # None: nothing is published after a deployment
    promotion_margin: float = DEFAULT_PROMOTION_MARGIN
    scaling: ScalingSettings = ScalingSettings()
    # None: a model serves with the image its version was registered with.
    serving_images: ServingImages | None = None
    precision: str = DEFAULT_PRECISION

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(variant.name for variant in self.variants)

    @property
    def default_variant(self) -> str:
        """The variant a version goes to unless it names another (the first one)."""
        return self.variants[0].name

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeploySettings:
        """Read and check the settings; a bad or missing value is a :class:`ConfigurationError`."""
        env = os.environ if env is None else env
        policy = DeploymentPolicy(
            strategy=_text(env, ENV_STRATEGY, CANARY).lower(),
            canary_percent=_integer(env, ENV_CANARY, 10),
            linear_step_percent=_integer(env, ENV_LINEAR, 25),
            baking_seconds=_integer(env, ENV_BAKING, 600),
            termination_wait_seconds=_integer(env, ENV_TERMINATION, 120),
            rollback_alarms=_names(env.get(ENV_ALARMS, "")),
            provisioning_allowance_seconds=_integer(
                env, ENV_PROVISIONING, DEFAULT_PROVISIONING_ALLOWANCE_SECONDS
            ),
        )
        settings = cls(
            group=_required(env, ENV_GROUP),
            endpoint_name=_required(env, ENV_ENDPOINT),
            execution_role_arn=_required(env, ENV_ROLE),
            kms_key_arn=_required(env, ENV_KMS),
            region=_required(env, ENV_REGION),
            variants=_variants(env.get(ENV_VARIANTS, "")),
            instance_type=_text(env, ENV_INSTANCE_TYPE, DEFAULT_INSTANCE_TYPE),
            initial_instance_count=_integer(env, ENV_INSTANCE_COUNT, 1),
            data_capture_uri=env.get(ENV_CAPTURE_URI) or None,
            data_capture_percent=_integer(env, ENV_CAPTURE_PERCENT, 100),
            stage=_text(env, ENV_STAGE, "dev").lower(),
            policy=policy,
            retain_variant_properties=_boolean(env, ENV_RETAIN, default=True),
            serving_files_uri=env.get(ENV_SERVING_FILES) or None,
            promotion_margin=_number(env, ENV_MARGIN, DEFAULT_PROMOTION_MARGIN),
            scaling=_scaling(env),
            serving_images=_serving_images(env),
            precision=_text(env, ENV_PRECISION, DEFAULT_PRECISION).lower(),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise :class:`ConfigurationError` naming every bad setting."""
        problems = list(_setting_problems(self))
        if problems:
            raise ConfigurationError("invalid deployer settings: " + "; ".join(problems))


def _setting_problems(settings: DeploySettings) -> list[str]:
    problems = []
    for name in settings.variant_names:
        if not _NAME_PATTERN.match(name):
            problems.append(f"{ENV_VARIANTS}: {name!r} is not a valid variant name")
    if len(set(settings.variant_names)) != len(settings.variant_names):
        problems.append(f"{ENV_VARIANTS}: variant names must be unique")
    if any(not (variant.weight > 0 and math.isfinite(variant.weight)) for variant in settings.variants):
        problems.append(f"{ENV_VARIANTS}: every weight must be > 0")
    if settings.initial_instance_count < 1:
        problems.append(f"{ENV_INSTANCE_COUNT} must be >= 1")
    if not 0 <= settings.data_capture_percent <= 100:
        problems.append(f"{ENV_CAPTURE_PERCENT} must be 0..100")
    if settings.data_capture_percent > 0 and not (settings.data_capture_uri or "").startswith("s3://"):
        problems.append(f"{ENV_CAPTURE_URI} must be an s3:// URI while {ENV_CAPTURE_PERCENT} > 0")
    if not 0 <= settings.promotion_margin <= 1:
        problems.append(f"{ENV_MARGIN} must be 0..1")
    if settings.precision not in PRECISIONS:
        problems.append(f"{ENV_PRECISION}={settings.precision!r} must be one of {', '.join(PRECISIONS)}")
    problems.extend(_policy_problems(settings.policy))
    problems.extend(_scaling_problems(settings))
    if settings.stage == PROD:
        problems.extend(_prod_problems(settings))
    return problems


def _scaling_problems(settings: DeploySettings) -> list[str]:
    scaling, problems = settings.scaling, []
    if not 1 <= scaling.min_instances <= scaling.max_instances:
        problems.append(f"need 1 <= {ENV_MIN_INSTANCES} <= {ENV_MAX_INSTANCES}")
    if not scaling.min_instances <= settings.initial_instance_count <= scaling.max_instances:
        problems.append(f"{ENV_INSTANCE_COUNT} must lie within {ENV_MIN_INSTANCES}..{ENV_MAX_INSTANCES}")
    if scaling.target_invocations < 1:
        problems.append(f"{ENV_TARGET_INVOCATIONS} must be >= 1")
    if min(scaling.scale_in_cooldown_seconds, scaling.scale_out_cooldown_seconds) < 0:
        problems.append(f"{ENV_SCALE_IN_COOLDOWN} and {ENV_SCALE_OUT_COOLDOWN} must be >= 0")
    if scaling.off_hours is not None and not 1 <= scaling.off_hours.instances <= scaling.max_instances:
        problems.append(f"{ENV_OFF_HOURS}: instances must be 1..{ENV_MAX_INSTANCES}")
    return problems


def _policy_problems(policy: DeploymentPolicy) -> list[str]:
    problems = []
    if policy.strategy not in STRATEGIES:
        problems.append(f"{ENV_STRATEGY}={policy.strategy!r} must be one of {', '.join(STRATEGIES)}")
    for name, value in ((ENV_CANARY, policy.canary_percent), (ENV_LINEAR, policy.linear_step_percent)):
        if not 1 <= value <= 50:
            problems.append(f"{name} must be 1..50")
    for name, value in (
        (ENV_BAKING, policy.baking_seconds),
        (ENV_TERMINATION, policy.termination_wait_seconds),
    ):
        if not 0 <= value <= MAX_WAIT_SECONDS:
            problems.append(f"{name} must be 0..{MAX_WAIT_SECONDS}")
    if policy.provisioning_allowance_seconds < 1:
        problems.append(f"{ENV_PROVISIONING} must be >= 1")
    if problems:
        return problems
    waits = total_wait_seconds(policy)
    if waits + policy.provisioning_allowance_seconds > MAX_EXECUTION_TIMEOUT_SECONDS:
        problems.append(
            f"the waits ({waits} s) plus provisioning exceed SageMaker's {MAX_EXECUTION_TIMEOUT_SECONDS} s "
            f"deployment limit: shorten {ENV_BAKING} or raise {ENV_LINEAR}"
        )
    return problems


def _prod_problems(settings: DeploySettings) -> list[str]:
    policy, problems = settings.policy, []
    if settings.initial_instance_count < PROD_MIN_INSTANCES:
        problems.append(f"prod endpoints need {ENV_INSTANCE_COUNT} >= {PROD_MIN_INSTANCES}")
    if settings.scaling.min_instances < PROD_MIN_INSTANCES:
        problems.append(f"prod endpoints need {ENV_MIN_INSTANCES} >= {PROD_MIN_INSTANCES}")
    if settings.scaling.off_hours is not None:
        problems.append(f"prod keeps its capacity around the clock: no {ENV_OFF_HOURS}")
    if policy.strategy == ALL_AT_ONCE:
        problems.append("prod deploys blue/green with traffic shifting: 'canary' or 'linear'")
    if policy.baking_seconds < PROD_MIN_BAKING_SECONDS:
        problems.append(f"prod needs {ENV_BAKING} >= {PROD_MIN_BAKING_SECONDS}")
    if len(policy.rollback_alarms) < PROD_MIN_ROLLBACK_ALARMS:
        problems.append(
            f"prod needs at least {PROD_MIN_ROLLBACK_ALARMS} {ENV_ALARMS} (5xx rate, model latency p99)"
        )
    return problems


# --- the length of a deployment -------------------------------------------------------------------


def traffic_steps(policy: DeploymentPolicy) -> int:
    """How many baking waits a deployment makes (counted high: the timeout must never be short).

    ALL_AT_ONCE bakes once after the shift; CANARY bakes the canary, then the full fleet; LINEAR
    bakes after each step. The same count as ``infra.stack_config.traffic_shift_steps``.
    """
    if policy.strategy == LINEAR:
        return math.ceil(100 / policy.linear_step_percent)
    if policy.strategy == CANARY:
        return 2
    return 1


def total_wait_seconds(policy: DeploymentPolicy) -> int:
    """The sum of every wait the deployment makes: baking between shifts, then the termination wait."""
    return traffic_steps(policy) * policy.baking_seconds + policy.termination_wait_seconds


def max_execution_timeout(policy: DeploymentPolicy) -> int:
    """MaximumExecutionTimeoutInSeconds: the waits plus time to provision, within SageMaker's bounds.

    Always strictly greater than :func:`total_wait_seconds`; a policy whose waits cannot fit is a
    :class:`ConfigurationError` rather than a deployment SageMaker would cut short.
    """
    waits = total_wait_seconds(policy)
    timeout = max(MIN_EXECUTION_TIMEOUT_SECONDS, waits + policy.provisioning_allowance_seconds)
    if timeout > MAX_EXECUTION_TIMEOUT_SECONDS or timeout <= waits:
        raise ConfigurationError(
            f"deployment waits of {waits} s leave no room under SageMaker's "
            f"{MAX_EXECUTION_TIMEOUT_SECONDS} s limit"
        )
    return timeout


# --- reading the environment ------------------------------------------------------------------------


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is not set")
    return value


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name}={raw!r} is not a finite number")
    return value


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise ConfigurationError(f"{name}={raw!r} is not true/false")


def _names(raw: str) -> tuple[str, ...]:
    """Alarm names: a JSON list or a comma-separated string."""
    raw = raw.strip()
    if raw.startswith("["):
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigurationError(f"{ENV_ALARMS} is not a JSON list") from None
        if not isinstance(values, list):
            raise ConfigurationError(f"{ENV_ALARMS} is not a JSON list")
        return tuple(str(v).strip() for v in values if str(v).strip())
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _json(env: Mapping[str, str], name: str) -> object:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigurationError(f"{name} is not valid JSON") from None


def _variants(raw: str) -> tuple[Variant, ...]:
    """``[{"name": ..., "weight": ...}, ...]``; unset: one variant named ``primary``."""
    values = _json({ENV_VARIANTS: raw}, ENV_VARIANTS)
    if values is None:
        return (Variant("primary"),)
    if not isinstance(values, list) or not values or not all(isinstance(v, dict) for v in values):
        raise ConfigurationError(f'{ENV_VARIANTS} must be a JSON list of {{"name", "weight"}} objects')
    try:
        return tuple(Variant(str(v["name"]), float(v.get("weight", 1.0))) for v in values)
    except (KeyError, TypeError, ValueError):
        raise ConfigurationError(f"{ENV_VARIANTS}: every variant needs a name and a numeric weight") from None


def _scaling(env: Mapping[str, str]) -> ScalingSettings:
    initial = _integer(env, ENV_INSTANCE_COUNT, 1)
    minimum = _integer(env, ENV_MIN_INSTANCES, initial)
    return ScalingSettings(
        min_instances=minimum,
        max_instances=_integer(env, ENV_MAX_INSTANCES, max(minimum, 2)),
        target_invocations=_integer(env, ENV_TARGET_INVOCATIONS, 100),
        scale_in_cooldown_seconds=_integer(env, ENV_SCALE_IN_COOLDOWN, 300),
        scale_out_cooldown_seconds=_integer(env, ENV_SCALE_OUT_COOLDOWN, 60),
        off_hours=_off_hours(env),
    )


def _off_hours(env: Mapping[str, str]) -> OffHours | None:
    value = _json(env, ENV_OFF_HOURS)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{ENV_OFF_HOURS} must be a JSON object")
    try:
        return OffHours(
            scale_down=str(value["scaleDown"]),
            scale_up=str(value["scaleUp"]),
            timezone=str(value.get("timezone", "UTC")),
            instances=int(value.get("instances", 1)),
        )
    except (KeyError, TypeError, ValueError):
        raise ConfigurationError(
            f"{ENV_OFF_HOURS} needs scaleDown and scaleUp (cron) and an integer instances"
        ) from None


def _serving_images(env: Mapping[str, str]) -> ServingImages | None:
    """Both family images or neither: a half-set pair would serve one family with the wrong image."""
    cpu = env.get(ENV_SERVING_IMAGE_CPU, "").strip()
    gpu = env.get(ENV_SERVING_IMAGE_GPU, "").strip()
    if not cpu and not gpu:
        return None
    if not (cpu and gpu):
        missing = ENV_SERVING_IMAGE_GPU if cpu else ENV_SERVING_IMAGE_CPU
        raise ConfigurationError(
            f"{missing} is not set: {ENV_SERVING_IMAGE_CPU} and {ENV_SERVING_IMAGE_GPU} go together"
        )
    return ServingImages(cpu=cpu, gpu=gpu)
