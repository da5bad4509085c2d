"""The deployer: an approved model version becomes the endpoint's new config, and its outcome is checked.

One Lambda, two EventBridge events: a version of this stack's group turning ``Approved`` (a new
Model and EndpointConfig with generated names, then CreateEndpoint or a blue/green UpdateEndpoint;
nothing is deleted), and a state change of this stack's endpoint (one verification: only
``InService`` on the expected config counts; a rollback is a failed deployment). Nothing waits for
a canary's baking, which can outlast a Lambda. Settings and behaviour: docs/deployments.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from handlers.common.aws_clients import LazyClient, botocore_client
from handlers.common.contracts import METRICS_NAMESPACE
from handlers.deployer.errors import (
    ChampionGateRefusedError,
    DeploymentConflictError,
    DeploymentError,
    DeploymentFailedError,
)
from handlers.deployer.gate import endpoint_tags, gate_unchecked_approval
from handlers.deployer.plan import (
    ENDPOINT_EVENT,
    MODEL_PACKAGE_EVENT,
    TAG_EXPECTED_CONFIG,
    TAG_MODEL_PACKAGE,
    TAG_VERIFIED,
    build_deployment_config,
    build_endpoint_config_request,
    build_model_request,
    model_tags,
    target_variant,
)
from handlers.deployer.scaling import apply_autoscaling, release_autoscaling
from handlers.deployer.serving_files import ServingFilesError, publish_serving_files
from handlers.deployer.settings import DeploySettings
from handlers.deployer.verify import (
    CHANGING,
    IN_SERVICE,
    DeploymentVerified,
    EndpointState,
    describe_endpoint_state,
    evaluate_endpoint,
    normalize_status,
)
from handlers.registry.client import APPROVED, ModelRegistry
from handlers.registry.errors import ModelNotApprovedError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

SUCCEEDED, FAILED_OUTCOME = "succeeded", "failed"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "deployer"))
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics(namespace=METRICS_NAMESPACE)


def _new_client() -> SageMakerClient:
    from botocore.config import Config  # noqa: PLC0415 - with the first client, not at import

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    endpoint_url = os.environ.get("ENDPOINT_URL_SAGEMAKER") or None
    return cast("SageMakerClient", botocore_client("sagemaker", config=config, endpoint_url=endpoint_url))


sagemaker_client: LazyClient[SageMakerClient] = LazyClient(_new_client)
s3_client: LazyClient[Any] = LazyClient(lambda: botocore_client("s3"))
autoscaling_client: LazyClient[Any] = LazyClient(lambda: botocore_client("application-autoscaling"))


@cache
def settings() -> DeploySettings:
    """Read once per cold start; a bad value is a ConfigurationError on every invocation."""
    return DeploySettings.from_env()


def reset_configuration() -> None:
    """Forget the settings read at cold start (tests change the environment)."""
    settings.cache_clear()


# --- typed events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPackageStateChange:
    """The parts of a ``SageMaker Model Package State Change`` event the deployer reads."""

    group: str
    version: int
    arn: str
    approval_status: str

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> ModelPackageStateChange:
        return cls(
            group=str(detail.get("ModelPackageGroupName", "")),
            version=int(detail.get("ModelPackageVersion") or 0),
            arn=str(detail.get("ModelPackageArn", "")),
            approval_status=str(detail.get("ModelApprovalStatus", "")),
        )


@dataclass(frozen=True)
class EndpointStateChange:
    """The parts of a ``SageMaker Endpoint State Change`` event the deployer reads."""

    endpoint: str
    status: str  # normalized: IN_SERVICE -> InService
    config_name: str | None

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> EndpointStateChange:
        return cls(
            endpoint=str(detail.get("EndpointName", "")),
            status=normalize_status(str(detail.get("EndpointStatus", ""))),
            config_name=detail.get("EndpointConfigName"),
        )


@dataclass(frozen=True)
class DeploymentStarted:
    """What the approval event did: ``created``, ``updated``, ``in-progress`` (a retry) or ``unchanged``."""

    action: str
    endpoint: str
    expected_config: str
    model_name: str
    model_package_arn: str
    model_version: int
    variant: str
    previous_config: str | None
    deployment_config: dict[str, Any] | None


# --- deploying ---------------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
def deploy_model_version(
    client: SageMakerClient, config: DeploySettings, package_arn: str
) -> DeploymentStarted:
    """Deploy one approved model version to the endpoint; returns before traffic has moved.

    A version approved without the champion gate is compared with the served one first
    (``handlers.deployer.gate``). Raises ModelNotApprovedError (never deployed),
    ChampionGateRefusedError (worse than the served version: rejected), DeploymentConflictError
    (the endpoint is busy or broken) or DeploymentError (SageMaker refused a request).
    """
    model = ModelRegistry(client).require_approved(package_arn)
    if model.group != config.group:
        raise DeploymentConflictError(
            f"model version {model.label} is not in this deployer's group {config.group!r}"
        )
    state = describe_endpoint_state(client, config.endpoint_name)
    # Before anything is created: a refused version leaves no model or config behind.
    decision = gate_unchecked_approval(client, state, model, config.promotion_margin)
    if decision is not None and not decision.promote:
        raise ChampionGateRefusedError(
            f"model version {model.label}: champion gate {decision.reason}", model.arn
        )
    variant = target_variant(config, model)
    live = _live_variants(client, state)
    model_request = build_model_request(config, model)
    _create_once(lambda: client.create_model(**model_request), "model", model_request["ModelName"])
    config_request = build_endpoint_config_request(
        config, model_request["ModelName"], model, {name: v.model_name for name, v in live.items()}
    )
    config_name = config_request["EndpointConfigName"]
    _create_once(lambda: client.create_endpoint_config(**config_request), "endpoint config", config_name)

    deployment_config: dict[str, Any] | None = None
    if state is None:
        _endpoint_call(
            lambda: client.create_endpoint(
                EndpointName=config.endpoint_name,
                EndpointConfigName=config_name,
                Tags=[{"Key": TAG_EXPECTED_CONFIG, "Value": config_name}, *model_tags(model)],
            ),
            config.endpoint_name,
        )
        action = "created"
    else:
        action, deployment_config = _update_endpoint(client, config, state, config_name, live)
        if state.arn:
            _endpoint_call(
                lambda: client.add_tags(
                    ResourceArn=str(state.arn),
                    Tags=[{"Key": TAG_EXPECTED_CONFIG, "Value": config_name}, *model_tags(model)],
                ),
                config.endpoint_name,
            )
    started = DeploymentStarted(
        action=action,
        endpoint=config.endpoint_name,
        expected_config=config_name,
        model_name=model_request["ModelName"],
        model_package_arn=model.arn,
        model_version=model.version,
        variant=variant,
        previous_config=state.config_name if state else None,
        deployment_config=deployment_config,
    )
    logger.info("deployment started", extra={"deployment": asdict(started)})
    return started


@dataclass(frozen=True)
class LiveVariant:
    """What a variant of the live endpoint config serves, on what."""

    model_name: str
    instance_type: str | None


def _live_variants(client: SageMakerClient, state: EndpointState | None) -> dict[str, LiveVariant]:
    """Variant name -> what it serves now (the live config); {} before the first deployment."""
    if state is None or not state.config_name:
        return {}
    try:
        described = client.describe_endpoint_config(EndpointConfigName=state.config_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise DeploymentError(
                f"reading the live endpoint config {state.config_name} failed: {exc}"
            ) from exc
        # Deleted by hand: nothing to keep, every variant gets the new version.
        logger.warning("the live endpoint config is gone", extra={"config": state.config_name})
        return {}
    return {
        str(v["VariantName"]): LiveVariant(str(v["ModelName"]), v.get("InstanceType"))
        for v in described.get("ProductionVariants", [])
    }


def _update_endpoint(
    client: SageMakerClient,
    config: DeploySettings,
    state: EndpointState,
    config_name: str,
    live: dict[str, LiveVariant],
) -> tuple[str, dict[str, Any] | None]:
    if state.status == IN_SERVICE and state.config_name == config_name:
        return "unchanged", None
    if state.status in CHANGING and state.pending_config == config_name:
        return "in-progress", None  # a retried event: the first try started this update
    if state.status != IN_SERVICE:
        pending = f" (deploying {state.pending_config})" if state.pending_config else ""
        raise DeploymentConflictError(
            f"endpoint {state.endpoint} is {state.status}{pending}; {config_name} can be deployed "
            "once it is InService"
        )
    deployment_config = build_deployment_config(config.policy)
    # Keep the live instance counts and weights (autoscaling or an A/B test moved them); only
    # possible while the variant names match, which is why they never change.
    retain = config.retain_variant_properties and set(state.variant_names) == set(config.variant_names)
    if config.retain_variant_properties and not retain:
        logger.warning(
            "variant names differ; the new config's counts and weights apply",
            extra={"live_variants": list(state.variant_names), "variants": list(config.variant_names)},
        )
    # SageMaker refuses to change the instance type of a scalable variant, or to drop one:
    # those targets go first, and every variant's scaling is applied again once verified.
    changed = [
        name
        for name, variant in live.items()
        if name not in config.variant_names or variant.instance_type != config.instance_type
    ]
    if changed:
        released = release_autoscaling(autoscaling_client.get(), state.endpoint, changed)
        logger.info("autoscaling released before the update", extra={"resources": released})
    _endpoint_call(
        lambda: client.update_endpoint(
            EndpointName=state.endpoint,
            EndpointConfigName=config_name,
            DeploymentConfig=cast(Any, deployment_config),
            RetainAllVariantProperties=retain,
        ),
        state.endpoint,
    )
    return "updated", deployment_config


def _create_once(create: Callable[[], Any], kind: str, name: str) -> bool:
    """Create a named resource; an existing one with this (content-derived) name is reused."""
    try:
        create()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "already exist" in str(error.get("Message", "")):
            logger.info(f"{kind} exists; reusing it", extra={"name": name})
            return False
        raise DeploymentError(
            f"creating {kind} {name} failed: {error.get('Code')}: {error.get('Message')}"
        ) from exc
    return True


def _endpoint_call(call: Callable[[], Any], endpoint: str) -> None:
    try:
        call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code"), error.get("Message")
        if code in ("ValidationException", "ConflictException"):
            raise DeploymentConflictError(f"endpoint {endpoint}: {message}") from exc
        raise DeploymentError(f"endpoint {endpoint}: {code}: {message}") from exc


# --- verifying ----------------------------------------------------------------------------------------


@tracer.capture_method(capture_response=False)
def verify_endpoint_event(
    client: SageMakerClient, config: DeploySettings, change: EndpointStateChange
) -> dict[str, Any]:
    """One verification, triggered by an endpoint state change: the endpoint's own state decides.

    Returns ``{"status": "ignored" | "in-progress" | "succeeded" | "duplicate", ...}``; a failed
    deployment emits ``DeploymentFailed`` and raises :class:`DeploymentFailedError`.
    """
    if change.endpoint != config.endpoint_name:
        return {"status": "ignored", "reason": f"endpoint {change.endpoint} is not {config.endpoint_name}"}
    state = describe_endpoint_state(client, config.endpoint_name)
    if state is None:
        return {"status": "ignored", "reason": f"endpoint {config.endpoint_name} does not exist"}
    if state.status != change.status:
        # Events can arrive late or out of order; DescribeEndpoint is the truth.
        logger.info(
            "event status differs from the endpoint's", extra={"event": change.status, "now": state.status}
        )
    tags = endpoint_tags(client, state.arn)
    expected = tags.get(TAG_EXPECTED_CONFIG)
    if not expected:
        return {"status": "ignored", "reason": "no deployment by this deployer is recorded on the endpoint"}
    result = {"endpoint": state.endpoint, "expected_config": expected, "endpoint_status": state.status}
    recorded = tags.get(TAG_VERIFIED, "")
    if recorded in (f"{SUCCEEDED}:{expected}", f"{FAILED_OUTCOME}:{expected}"):
        # SageMaker may send several events per change; each outcome is counted once.
        return {**result, "status": "duplicate", "outcome": recorded.split(":", 1)[0]}
    try:
        verified = evaluate_endpoint(state, expected)
    except DeploymentFailedError as exc:
        record_failure(exc)
        _mark_verified(client, state.arn, f"{FAILED_OUTCOME}:{expected}")
        raise
    if verified is None:
        return {**result, "status": "in-progress"}
    # Scaling first: if it fails, the Lambda's retry verifies (and scales) again, as nothing is
    # marked verified yet. Every variant the endpoint has now is scaled, after every rollout.
    scaled = apply_autoscaling(autoscaling_client.get(), config, state.variant_names)
    record_success(verified)
    published = publish_for_endpoint(client, config, tags)
    _mark_verified(client, state.arn, f"{SUCCEEDED}:{expected}")
    return {**result, "status": SUCCEEDED, "published": published, "autoscaling": scaled}


def publish_for_endpoint(
    client: SageMakerClient, config: DeploySettings, tags: dict[str, str], s3: Any | None = None
) -> list[str]:
    """Publish the serving files of the version the endpoint's tags name (see
    ``handlers.deployer.serving_files``); returns the URIs written, [] when not configured."""
    package = tags.get(TAG_MODEL_PACKAGE)
    if not config.serving_files_uri or not package:
        return []
    model = ModelRegistry(client).describe(package)
    try:
        written = publish_serving_files(s3 or s3_client.get(), model, config.serving_files_uri)
    except ServingFilesError as exc:
        # The deployment stands; the API keeps the previous schema. Loud, counted, not fatal.
        logger.error("serving files not published", extra={"model": model.label, "reason": str(exc)})
        _count("ServingFilesNotPublished", config.endpoint_name)
        return []
    logger.info("serving files published", extra={"model": model.label, "files": written})
    return written


def record_failure(exc: DeploymentFailedError) -> None:
    """``DeploymentFailed`` (count, dimension EndpointName) and an error log with the reason."""
    logger.error(
        "deployment failed",
        extra={
            "endpoint": exc.endpoint,
            "expected_config": exc.expected_config,
            "endpoint_status": exc.status,
            "actual_config": exc.actual_config,
            "failure_reason": exc.reason,
        },
    )
    _count("DeploymentFailed", exc.endpoint)


def record_success(verified: DeploymentVerified) -> None:
    logger.info("deployment verified", extra={"endpoint": verified.endpoint, "config": verified.config_name})
    _count("DeploymentSucceeded", verified.endpoint)


def _count(name: str, endpoint: str) -> None:
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=METRICS_NAMESPACE) as metric:
        metric.add_dimension(name="EndpointName", value=endpoint)


def _mark_verified(client: SageMakerClient, arn: str | None, value: str) -> None:
    if not arn:
        return
    try:
        client.add_tags(ResourceArn=arn, Tags=[{"Key": TAG_VERIFIED, "Value": value}])
    except ClientError:
        # Only de-duplication depends on it; the outcome itself is already logged and counted.
        logger.warning("could not tag the verified outcome", extra={"value": value}, exc_info=True)


# --- the Lambda ----------------------------------------------------------------------------------------


def handle_event(event: EventBridgeEvent, client: SageMakerClient | None = None) -> dict[str, Any]:
    """Route one EventBridge event; anything not for this stack is ignored (and says why)."""
    client = client or sagemaker_client.get()
    config = settings()
    detail = dict(event.detail or {})
    if event.detail_type == MODEL_PACKAGE_EVENT:
        return _on_model_package_change(client, config, ModelPackageStateChange.from_detail(detail))
    if event.detail_type == ENDPOINT_EVENT:
        return verify_endpoint_event(client, config, EndpointStateChange.from_detail(detail))
    logger.info("ignoring an event of another type", extra={"detail_type": event.detail_type})
    return {"status": "ignored", "reason": f"not a deployer event: {event.detail_type!r}"}


def _on_model_package_change(
    client: SageMakerClient, config: DeploySettings, change: ModelPackageStateChange
) -> dict[str, Any]:
    if change.group != config.group:
        return {"status": "ignored", "reason": f"group {change.group!r} is not {config.group!r}"}
    if change.approval_status != APPROVED:
        return {"status": "ignored", "reason": f"approval status is {change.approval_status}"}
    try:
        started = deploy_model_version(client, config, change.arn)
    except ModelNotApprovedError as exc:
        # Approved, then rejected before this ran: the registry, read now, wins.
        logger.warning("refused to deploy", extra={"model_package": exc.arn, "approval_status": exc.status})
        _count("DeploymentRefused", config.endpoint_name)
        return {"status": "refused", "reason": exc.message, "model_package_arn": exc.arn}
    except ChampionGateRefusedError as exc:
        # Approved without the gate (the console) and worse than the served version: rejected.
        logger.warning("champion gate refused", extra={"model_package": exc.arn, "reason": exc.message})
        _count("DeploymentRefused", config.endpoint_name)
        return {"status": "refused", "reason": exc.message, "model_package_arn": exc.arn}
    metrics.add_metric(name="DeploymentStarted", unit=MetricUnit.Count, value=1)
    return {"status": started.action, **asdict(started)}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(raise_on_empty_metrics=False)
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="DeployerEvents", unit=MetricUnit.Count, value=1)
    return handle_event(event)
