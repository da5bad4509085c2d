"""The prediction API's optional web ACL: AWS managed protections and a per-IP rate limit.

Switched on by ``api.waf`` (prod); declared as part of the API component, on its one stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from infra.context import StackIdentity

if TYPE_CHECKING:  # pulumi_aws.wafv2 takes ~0.3 s to import: only stacks with a WAF pay for it
    from pulumi_aws.wafv2 import WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideArgsDict

    ManagedOverride = WebAclRuleStatementManagedRuleGroupStatementRuleActionOverrideArgsDict


def web_acl(
    name: str,
    stack: StackIdentity,
    *,
    throttle_rate_per_second: int,
    rest_api: aws.apigateway.RestApi,
    stage: aws.apigateway.Stage,
    parent: pulumi.Resource,
) -> aws.wafv2.WebAcl:
    """The web ACL and its association with ``stage``, as children of ``parent`` named after ``name``."""
    prefix = stack.name_prefix
    # Per client IP over 5 minutes: one minute of the stage's whole rate, so a single client
    # cannot hold the stage's throttle for long.
    ip_limit = max(100, throttle_rate_per_second * 60)
    acl = aws.wafv2.WebAcl(
        f"{name}-web-acl",
        name=f"{prefix}-prediction-api",
        description="Managed protections and a per-IP rate limit for the prediction API",
        scope="REGIONAL",
        default_action={"allow": {}},
        rules=[
            {
                "name": "rate-limit-per-ip",
                "priority": 0,
                "action": {"block": {}},
                "statement": {
                    "rate_based_statement": {
                        "limit": ip_limit,
                        "aggregate_key_type": "IP",
                        "evaluation_window_sec": 300,
                    }
                },
                "visibility_config": _visibility(f"{prefix}-rate-limit-per-ip"),
            },
            # The common rule set blocks bodies over 8 KB; the API has its own limit (MAX_BODY_BYTES,
            # 413 in the documented format), so that one rule only counts.
            _managed(
                prefix,
                "AWSManagedRulesCommonRuleSet",
                10,
                [{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}],
            ),
            _managed(prefix, "AWSManagedRulesKnownBadInputsRuleSet", 20, []),
        ],
        visibility_config=_visibility(f"{prefix}-prediction-api"),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    stage_arn = pulumi.Output.concat(
        "arn:", stack.partition, ":apigateway:", stack.region, "::/restapis/", rest_api.id,
        "/stages/", stage.stage_name,
    )  # fmt: skip
    aws.wafv2.WebAclAssociation(
        f"{name}-web-acl-association",
        resource_arn=stage_arn,
        web_acl_arn=acl.arn,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[stage]),
    )
    return acl


def _visibility(metric: str) -> aws.wafv2.WebAclVisibilityConfigArgsDict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def _managed(
    prefix: str, rule_name: str, priority: int, overrides: list[ManagedOverride]
) -> aws.wafv2.WebAclRuleArgsDict:
    statement: aws.wafv2.WebAclRuleStatementManagedRuleGroupStatementArgsDict = {
        "vendor_name": "AWS",
        "name": rule_name,
    }
    if overrides:
        statement["rule_action_overrides"] = overrides
    return {
        "name": rule_name,
        "priority": priority,
        "override_action": {"none": {}},
        "statement": {"managed_rule_group_statement": statement},
        "visibility_config": _visibility(f"{prefix}-{rule_name}"),
    }
