"""The pulumi_policy pack: built from the same table, one policy per rule."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

pulumi_policy = pytest.importorskip("pulumi_policy")

from policy import pack  # noqa: E402
from policy.catalog import ALL_RULES  # noqa: E402

POLICY_DIR = Path(pack.__file__).resolve().parent


def test_one_policy_per_rule_with_its_enforcement_level():
    # GIVEN the rule table
    # WHEN the policies are built
    policies = pack.build_policies()
    # THEN each rule becomes one policy of the same name, mandatory rules enforced as mandatory
    assert [p.name for p in policies] == [r.id for r in ALL_RULES]
    levels = {p.name: p.enforcement_level for p in policies}
    for rule in ALL_RULES:
        expected = "MANDATORY" if rule.severity == "mandatory" else "ADVISORY"
        assert levels[rule.id] == getattr(pulumi_policy.EnforcementLevel, expected)


def test_main_builds_the_pack_with_every_rule(monkeypatch):
    # GIVEN PolicyPack replaced by a recorder (the real one serves the Pulumi engine forever)
    built: dict[str, Any] = {}

    def record(name, policies, enforcement_level=None, **_):
        built.update(name=name, policies=policies, level=enforcement_level)

    monkeypatch.setattr(pack, "PolicyPack", record)
    # WHEN the entry point runs as `pulumi preview --policy-pack policy` would run it
    runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")
    # THEN the pack is named ml-platform and holds every rule
    assert built["name"] == "ml-platform"
    assert len(built["policies"]) == len(ALL_RULES) >= 60
    assert (POLICY_DIR / "PulumiPolicy.yaml").read_text().startswith("runtime: python")


def _args(type_, name, props, environment="dev"):
    return pulumi_policy.ResourceValidationArgs(
        resource_type=type_,
        props=props,
        urn=f"urn:pulumi:{environment}::ml-platform::{type_}::{name}",
        name=name,
        opts=None,
        provider=None,
    )


def _validate(rule_id, args):
    policy: Any = next(p for p in pack.build_policies() if p.name == rule_id)
    messages = []
    policy.validate(args, lambda message, urn=None: messages.append(message))
    return messages


def test_resource_policy_reports_a_violation():
    # GIVEN a public access block with one flag off
    args = _args(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "b-pab",
        {
            "blockPublicAcls": False,
            "blockPublicPolicy": True,
            "ignorePublicAcls": True,
            "restrictPublicBuckets": True,
        },
    )
    # WHEN the pack's policy validates it
    # THEN it reports the violation
    assert _validate("s3-block-public-acls", args) == ["public access block has blockPublicAcls off"]


def test_waived_advisory_is_not_reported():
    # GIVEN the access-log bucket's SSE-S3 encryption (waived) and another bucket's (not waived)
    props = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
    sse = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    # WHEN the pack validates both
    # THEN only the un-waived one is reported
    assert _validate("s3-sse-kms-cmk", _args(sse, "data-lake-access-logs-encryption", props)) == []
    assert len(_validate("s3-sse-kms-cmk", _args(sse, "data-lake-raw-encryption", props))) == 1


def test_environment_comes_from_the_stack_in_the_urn():
    # GIVEN a 30-day log group in a prod stack and in a dev stack
    props = {"retentionInDays": 30, "kmsKeyId": "k"}
    group = "aws:cloudwatch/logGroup:LogGroup"
    # THEN the prod retention rule reports it in prod only
    assert len(_validate("cw-log-retention-prod", _args(group, "g", props, environment="prod"))) == 1
    assert _validate("cw-log-retention-prod", _args(group, "g", props, environment="dev")) == []
