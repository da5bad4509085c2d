"""Documented waivers of advisory rules: which rule, on which resources, and why.

A waiver matches a rule id, a resource logical-name pattern (``fnmatch``), optionally only some
environments and only resources whose properties satisfy ``applies``. Mandatory rules cannot be
waived: a waiver naming one is ignored by the engine and rejected by the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from policy.rules.sagemaker import endpoint_volume_key_waivable, pipeline_volume_key_waivable


@dataclass(frozen=True)
class Waiver:
    rule_id: str
    name_pattern: str
    reason: str
    environments: tuple[str, ...] | None = None  # None: every environment
    applies: Callable[[Mapping[str, Any]], bool] | None = None

    def matches(self, rule_id: str, name: str, environment: str, props: Mapping[str, Any]) -> bool:
        if rule_id != self.rule_id or not fnmatchcase(name, self.name_pattern):
            return False
        if self.environments is not None and environment not in self.environments:
            return False
        return self.applies is None or self.applies(props)


WAIVERS: tuple[Waiver, ...] = (
    Waiver(
        "s3-sse-kms-cmk",
        "*access-logs*",
        "S3 server access logging cannot deliver to a bucket whose default encryption is SSE-KMS; "
        "the access-log bucket uses SSE-S3 (AES256), still TLS-only, versioned and private.",
    ),
    Waiver(
        "sagemaker-endpoint-volume-kms",
        "*",
        "Instance types with local NVMe storage (g4dn, g5, p4d, ...): SageMaker refuses a volume KMS "
        "key for them, their instance store is encrypted by the hardware (CKV_AWS_98 does not apply).",
        applies=endpoint_volume_key_waivable,
    ),
    Waiver(
        "sagemaker-training-volume-kms",
        "*",
        "Training/processing steps on instance types with local NVMe storage: SageMaker refuses "
        "VolumeKmsKeyId for them, their instance store is encrypted by the hardware.",
        applies=pipeline_volume_key_waivable,
    ),
    Waiver(
        "sagemaker-training-vpc",
        "training-pipeline",
        "The platform has no VPC; training and processing containers run with network isolation "
        "(no network at all), which is stricter than a VPC for jobs that need no network.",
    ),
    Waiver(
        "apigw-waf",
        "api-stage",
        "WAF is optional by config (api.waf); outside prod the stage runs without a web ACL to save "
        "cost, behind API keys, usage-plan and stage throttling. Prod must have it (not waived there).",
        environments=("dev", "staging"),
    ),
    Waiver(
        "events-target-retry",
        "monitoring-pipeline-failed-target",
        "Alert delivery to the SNS topic: EventBridge's default retry (185 attempts over 24 h) is "
        "wanted for an alert; bounding it would drop alerts during an SNS outage.",
    ),
)
