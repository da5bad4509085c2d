"""A/B variants survive rollouts: a version replaces one variant, the others keep theirs and the
weights; scaling that an update would break is released first (docs/deployments.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from handlers.common.contracts import TARGET_VARIANT_KEY
from tests.functional.deployer.conftest import (
    ENDPOINT,
    ENDPOINT_ARN,
    Approved,
    Split,
    approval_event,
    endpoint_description,
    handle,
)

AB = '[{"name": "a", "weight": 3}, {"name": "b", "weight": 1}]'


def served(moto_sagemaker: Any, config_name: str) -> list[tuple[str, str, float]]:
    """(variant, model, weight) of an endpoint config."""
    variants = moto_sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    return [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in variants]


def name_variant(moto_sagemaker: Any, arn: str, variant: str) -> None:
    """What ``mlctl models approve --variant`` records (plain moto resets what a request omits)."""
    metadata = moto_sagemaker.describe_model_package(ModelPackageName=arn).get(
        "CustomerMetadataProperties", {}
    )
    moto_sagemaker.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Approved",
        CustomerMetadataProperties={**metadata, TARGET_VARIANT_KEY: variant},
    )


def live_endpoint(config_name: str) -> dict[str, Any]:
    described = endpoint_description("InService", config_name)
    described["ProductionVariants"] = [
        {"VariantName": "a", "CurrentInstanceCount": 2, "CurrentWeight": 3.0},
        {"VariantName": "b", "CurrentInstanceCount": 1, "CurrentWeight": 1.0},
    ]
    return described


def queue_update(stubber: Stubber, live_config: str) -> None:
    stubber.add_response("describe_endpoint", live_endpoint(live_config), {"EndpointName": ENDPOINT})
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": ANY,
            "DeploymentConfig": ANY,
            # the live counts and weights (autoscaling, the A/B split) are kept
            "RetainAllVariantProperties": True,
        },
    )


def test_a_rollout_replaces_one_variant_and_keeps_the_other_and_the_weights(
    deploy_env: Callable[..., None], moto_sagemaker: Any, approved: Approved, split: Split
) -> None:
    # GIVEN a two-variant stack (a: 3, b: 1) whose first deployment serves version 1 on both
    deploy_env(PRODUCTION_VARIANTS=AB)
    split(stubbed=())
    first = handle(approval_event(approved(run=1)))
    assert served(moto_sagemaker, first["expected_config"]) == [
        ("a", first["model_name"], 3.0),
        ("b", first["model_name"], 1.0),
    ]

    # WHEN version 2, approved for variant b, rolls out
    second = approved(run=2)
    name_variant(moto_sagemaker, second.arn, "b")
    _, stubber = split()
    queue_update(stubber, first["expected_config"])
    rollout = handle(approval_event(second))

    # THEN b serves version 2, a still serves version 1, and both keep their weights
    stubber.assert_no_pending_responses()
    assert rollout["status"] == "updated" and rollout["variant"] == "b"
    assert served(moto_sagemaker, rollout["expected_config"]) == [
        ("a", first["model_name"], 3.0),
        ("b", rollout["model_name"], 1.0),
    ]

    # WHEN version 3, naming no variant, rolls out on top
    _, stubber = split()
    queue_update(stubber, rollout["expected_config"])
    third = handle(approval_event(approved(run=3)))

    # THEN it replaces the first variant only: b keeps version 2
    assert third["variant"] == "a"
    assert served(moto_sagemaker, third["expected_config"]) == [
        ("a", third["model_name"], 3.0),
        ("b", rollout["model_name"], 1.0),
    ]


def test_a_version_naming_an_unknown_variant_is_refused_before_anything_is_created(
    deploy_env: Callable[..., None], moto_sagemaker: Any, approved: Approved, split: Split
) -> None:
    # GIVEN a two-variant stack and a version approved for a variant it does not have
    deploy_env(PRODUCTION_VARIANTS=AB)
    version = approved(run=1)
    name_variant(moto_sagemaker, version.arn, "c")
    split(stubbed=())

    # WHEN its approval arrives THEN the deployer names the variants it has, and creates nothing
    with pytest.raises(Exception, match="names variant 'c'; this endpoint's variants are a, b"):
        handle(approval_event(version))
    assert moto_sagemaker.list_models()["Models"] == []


def test_a_new_instance_type_releases_the_variants_scaling_before_the_update(
    deploy_env: Callable[..., None],
    moto_sagemaker: Any,
    approved: Approved,
    split: Split,
    scaling: Stubber,
) -> None:
    # GIVEN version 1 live on ml.g4dn.xlarge in both variants
    deploy_env(PRODUCTION_VARIANTS=AB)
    split(stubbed=())
    first = handle(approval_event(approved(run=1)))

    # WHEN the stack moves to another instance type and version 2 rolls out
    deploy_env(PRODUCTION_VARIANTS=AB, INSTANCE_TYPE="ml.g4dn.2xlarge")
    for variant in ("a", "b"):
        scaling.add_response(
            "deregister_scalable_target",
            {},
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": f"endpoint/{ENDPOINT}/variant/{variant}",
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            },
        )
    _, stubber = split()
    queue_update(stubber, first["expected_config"])
    rollout = handle(approval_event(approved(run=2)))

    # THEN both variants' scalable targets were released first (SageMaker refuses the update
    # otherwise); they are registered again once the deployment is verified
    scaling.assert_no_pending_responses()
    assert rollout["status"] == "updated"
