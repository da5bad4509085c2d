"""Parliament over every IAM policy document the program declares."""

from __future__ import annotations

import json

import pytest

from infra.offline import PlannedResource
from infra.stack_config import available_stacks
from policy.iam_lint import IGNORED, lint, open_findings
from tests.infra.conftest import cached_plan


@pytest.mark.parametrize("stack", available_stacks())
def test_no_unexplained_finding(stack):
    # GIVEN every role, role policy, and bucket/topic/queue/key policy of an example stack
    resources = cached_plan(stack).resources
    # WHEN parliament lints them
    # THEN every finding is an explicit, documented ignore
    assert open_findings(resources) == []


@pytest.mark.parametrize("stack", available_stacks())
def test_documents_were_linted(stack):
    # GIVEN an example stack: it declares roles and role policies
    findings = lint(cached_plan(stack).resources)
    # THEN parliament did run over them (the known, ignored findings show up)
    assert {f.type for f in findings} >= {"aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"}


def test_a_bad_policy_is_reported():
    # GIVEN a role policy with a misspelt action and an unscoped s3 read
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        ],
    }
    resource = PlannedResource(
        urn="urn:x", type="aws:iam/rolePolicy:RolePolicy", name="bad", parent_urn="", custom=True,
        inputs={"policy": json.dumps(policy), "role": "r"}, outputs={}, id="bad",
    )  # fmt: skip
    # WHEN linted
    issues = {f.issue for f in open_findings([resource])}
    # THEN both problems are open findings
    assert {"UNKNOWN_ACTION", "RESOURCE_STAR"} <= issues


def test_an_ignored_action_does_not_hide_another_on_the_same_statement():
    # GIVEN a statement with an unscopable action (ignored alone) and a scopable one, on Resource '*'
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "s3:GetObject"], "Resource": "*"}
        ],
    }
    resource = PlannedResource(
        urn="urn:x", type="aws:iam/rolePolicy:RolePolicy", name="mixed", parent_urn="", custom=True,
        inputs={"policy": json.dumps(policy), "role": "r"}, outputs={}, id="mixed",
    )  # fmt: skip
    # WHEN linted
    # THEN the RESOURCE_STAR finding stays open: the ignore covers ecr:GetAuthorizationToken only
    assert [f.issue for f in open_findings([resource])] == ["RESOURCE_STAR"]


def test_ignores_are_specific_and_explained():
    # GIVEN the documented ignores
    for ignore in IGNORED:
        # THEN each names a finding id, a document kind and what it is for, with a reason
        assert ignore.issue.isupper() and ignore.kind in ("identity", "trust", "resource")
        assert ignore.detail_contains.strip() and len(ignore.reason) > 40
