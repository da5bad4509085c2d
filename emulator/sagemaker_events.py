"""The EventBridge events SageMaker sends, built from moto's records in the shapes AWS uses
(``tests/events/eventbridge_model_package_approved.json``,
``tests/events/eventbridge_endpoint_state_change.json``).

- ``SageMaker Model Package State Change``: a version was created, or its approval status changed;
  the detail is the version as DescribeModelPackage shows it, dates in ISO 8601.
- ``SageMaker Endpoint State Change``: an endpoint's status changed; the status in SageMaker's
  event spelling (``IN_SERVICE``), times in epoch milliseconds, the endpoint's tags as a map.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from emulator.events import Event, new_event
from handlers.deployer.plan import ENDPOINT_EVENT, MODEL_PACKAGE_EVENT

SOURCE = "aws.sagemaker"
# The detail of a model package event: DescribeModelPackage without who created or changed it.
MODEL_PACKAGE_DETAIL = (
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "ModelPackageDescription",
    "CreationTime",
    "InferenceSpecification",
    "ModelPackageStatus",
    "ModelPackageStatusDetails",
    "CertifyForMarketplace",
    "ModelApprovalStatus",
    "ApprovalDescription",
    "MetadataProperties",
    "ModelMetrics",
    "CustomerMetadataProperties",
    "DriftCheckBaselines",
    "LastModifiedTime",
)


def model_package_state_change(package: Any) -> Event:
    """The event for moto's model package ``package`` as it is now."""
    described = package.gen_response_object()
    detail = {key: _iso(described[key]) for key in MODEL_PACKAGE_DETAIL if described.get(key) is not None}
    arn = str(detail["ModelPackageArn"])
    return new_event(source=SOURCE, detail_type=MODEL_PACKAGE_EVENT, resources=[arn], detail=detail, arn=arn)


def endpoint_state_change(endpoint: Any) -> Event:
    """The event for moto's endpoint ``endpoint`` in its current status."""
    detail = {
        "EndpointName": endpoint.endpoint_name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": endpoint.endpoint_config_name,
        "ProductionVariants": [
            {
                "DesiredWeight": float(variant.get("DesiredWeight", 1.0)),
                "DesiredInstanceCount": float(variant.get("DesiredInstanceCount", 1)),
            }
            for variant in endpoint.production_variants or []
        ],
        "EndpointStatus": event_status(endpoint.endpoint_status),
        "CreationTime": _epoch_ms(endpoint.creation_time),
        "LastModifiedTime": _epoch_ms(endpoint.last_modified_time),
        "Tags": {tag["Key"]: tag["Value"] for tag in endpoint.tags or []},
    }
    arn = str(endpoint.arn)
    return new_event(source=SOURCE, detail_type=ENDPOINT_EVENT, resources=[arn], detail=detail, arn=arn)


def event_status(status: str) -> str:
    """DescribeEndpoint's ``InService`` as events spell it: ``IN_SERVICE``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", status).upper()


def _iso(value: Any) -> Any:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else value


def _epoch_ms(value: Any) -> float | None:
    return round(value.timestamp() * 1000.0, 3) if isinstance(value, datetime) else None
