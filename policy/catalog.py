"""Every rule of the pack, in one table."""

from __future__ import annotations

from policy.rules import Rule, StackRule, apigateway, cloudwatch, iam, kms, lambda_, s3, sagemaker

RULES: tuple[Rule, ...] = (
    *s3.RULES,
    *kms.RULES,
    *sagemaker.RULES,
    *lambda_.RULES,
    *apigateway.RULES,
    *iam.RULES,
    *cloudwatch.RULES,
)
STACK_RULES: tuple[StackRule, ...] = (*s3.STACK_RULES, *lambda_.STACK_RULES, *apigateway.STACK_RULES)
ALL_RULES: tuple[Rule | StackRule, ...] = (*RULES, *STACK_RULES)


def rule_by_id(rule_id: str) -> Rule | StackRule:
    for rule in ALL_RULES:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)
