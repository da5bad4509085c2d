"""The champion gate where deployments start: a version approved without it is compared first.

``mlctl models approve`` and ``mlctl local up`` compare a version with the served one before they
approve it, and record the comparison in the registry (``comparison.*``, ``handlers.registry.champion``).
A version approved any other way (the SageMaker console, the API) carries no comparison: the
deployer runs the metrics gate itself before deploying it, and a worse version is rejected, with
the reason as its approval description, instead of deployed. A version approved with
``mlctl models approve --skip-champion-gate`` carries ``comparison.decision=skipped`` and is
deployed as approved.

The champion is the version the endpoint serves, read from the tags the deployer put on the live
endpoint config and model, while it is still ``Approved``: a served version that was rejected
(``mlctl models rollback`` rejects it first) is no champion, so a rollback is never refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers.deployer.errors import DeploymentError
from handlers.deployer.plan import TAG_EXPECTED_CONFIG, TAG_MODEL_PACKAGE
from handlers.deployer.verify import EndpointState
from handlers.registry import champion
from handlers.registry.client import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

DECISION_KEY = f"{champion.COMPARISON_PREFIX}decision"


class UnknownServedVersionError(DeploymentError):
    """The endpoint serves a config that names no model package: the deployer did not create it."""


def endpoint_tags(client: SageMakerClient, arn: str | None) -> dict[str, str]:
    """The tags of a SageMaker resource, every page; {} without an ARN."""
    if not arn:
        return {}
    tags: dict[str, str] = {}
    request: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = client.list_tags(**request)
        # Later entries win: moto appends a re-added key instead of replacing it.
        tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        request["NextToken"] = page["NextToken"]


def served_version(client: SageMakerClient, registry: ModelRegistry, endpoint: str) -> ModelVersion:
    """The registry version the endpoint serves now (ClientError when there is no such endpoint)."""
    described = client.describe_endpoint(EndpointName=endpoint)
    return served_by_config(
        client, registry, endpoint, described.get("EndpointConfigName"), described.get("EndpointArn")
    )


def served_by_config(
    client: SageMakerClient,
    registry: ModelRegistry,
    endpoint: str,
    config_name: str | None,
    endpoint_arn: str | None,
) -> ModelVersion:
    """The registry version behind the endpoint's live config.

    Read from the tags of the live endpoint config (and its model), which the deployer wrote when it
    created them: the endpoint's own tags name the last *attempted* deployment, which a silent
    rollback leaves pointing at a config that does not serve. Raises
    :class:`UnknownServedVersionError` when the config names no package.
    """
    if not config_name:
        raise UnknownServedVersionError(f"endpoint {endpoint} has no endpoint config")
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    arns = [config.get("EndpointConfigArn")]
    variants = config.get("ProductionVariants") or []
    if variants and variants[0].get("ModelName"):
        arns.append(client.describe_model(ModelName=variants[0]["ModelName"]).get("ModelArn"))
    for arn in arns:
        package = endpoint_tags(client, arn).get(TAG_MODEL_PACKAGE)
        if package:
            return registry.describe(package)
    on_endpoint = endpoint_tags(client, endpoint_arn)
    if on_endpoint.get(TAG_EXPECTED_CONFIG) == config_name and on_endpoint.get(TAG_MODEL_PACKAGE):
        return registry.describe(on_endpoint[TAG_MODEL_PACKAGE])
    raise UnknownServedVersionError(
        f"endpoint {endpoint} serves {config_name}, which names no model package "
        f"(tag {TAG_MODEL_PACKAGE}): it was not deployed by the deployer"
    )


def was_compared(version: ModelVersion) -> bool:
    """Whether the version's approval already went through the gate (or skipped it on purpose)."""
    return DECISION_KEY in version.customer_metadata


def current_champion(
    client: SageMakerClient, state: EndpointState | None, challenger: ModelVersion
) -> ModelVersion | None:
    """The approved version the endpoint (``state``) serves, unless it is ``challenger`` itself."""
    if state is None:
        return None  # no endpoint yet: the first deployment has no champion
    try:
        serving = served_by_config(
            client, ModelRegistry(client), state.endpoint, state.config_name, state.arn
        )
    except (ClientError, UnknownServedVersionError):
        return None  # served by something else than the deployer: nothing to compare with
    if serving.arn == challenger.arn or not serving.approved:
        return None
    return serving


def gate_unchecked_approval(
    client: SageMakerClient, state: EndpointState | None, challenger: ModelVersion, margin: float
) -> champion.Decision | None:
    """Compare an approved version that was never compared; a refusal rejects it in the registry.

    None when there is nothing to decide: it was compared (or skipped) at approval, or there is no
    approved champion on the endpoint (none yet, rejected, or not deployed by the deployer).
    """
    if was_compared(challenger):
        return None
    serving = current_champion(client, state, challenger)
    if serving is None:
        return None
    decision = champion.compare_versions(serving, challenger, margin)
    champion.record_decision(client, challenger.arn, decision, serving)
    return decision
