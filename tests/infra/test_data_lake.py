"""The DataLake's security and retention properties, asserted bucket by bucket on the real program."""

from __future__ import annotations

import json

import pytest

from infra.data_lake import ACCESS_LOG_BUCKET, DATA_BUCKETS, DERIVED_BUCKETS
from infra.offline import Plan, PlannedResource
from tests.infra.conftest import attached_to, policy_document

ALL_BUCKETS = (*DATA_BUCKETS, ACCESS_LOG_BUCKET)
BUCKET = "aws:s3/bucket:Bucket"


def bucket(plan: Plan, purpose: str) -> PlannedResource:
    return plan.named(f"data-lake-{purpose}")


def test_the_data_lake_declares_four_data_buckets_and_an_access_log_bucket(stack_plan: Plan) -> None:
    # GIVEN each shipped stack WHEN the program runs THEN exactly the five buckets exist
    names = sorted(r.name for r in stack_plan.of_type(BUCKET))
    assert names == sorted(f"data-lake-{purpose}" for purpose in ALL_BUCKETS)


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
def test_every_bucket_is_versioned(stack_plan: Plan, purpose: str) -> None:
    versioning = attached_to(
        stack_plan, "aws:s3/bucketVersioning:BucketVersioning", bucket(stack_plan, purpose)
    )
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"


@pytest.mark.parametrize("purpose", DATA_BUCKETS)
def test_data_buckets_use_sse_kms_with_the_stack_key_and_a_bucket_key(stack_plan: Plan, purpose: str) -> None:
    encryption = attached_to(
        stack_plan,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        bucket(stack_plan, purpose),
    )
    (rule,) = encryption.inputs["rules"]
    default = rule["applyServerSideEncryptionByDefault"]
    assert default["sseAlgorithm"] == "aws:kms"
    assert default["kmsMasterKeyId"] == stack_plan.named("data-lake-key").outputs["arn"]
    assert rule["bucketKeyEnabled"] is True


def test_the_access_log_bucket_uses_sse_s3_because_log_delivery_cannot_use_kms(stack_plan: Plan) -> None:
    encryption = attached_to(
        stack_plan,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        bucket(stack_plan, ACCESS_LOG_BUCKET),
    )
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
@pytest.mark.parametrize(
    "flag", ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]
)
def test_every_bucket_blocks_public_access(stack_plan: Plan, purpose: str, flag: str) -> None:
    block = attached_to(
        stack_plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", bucket(stack_plan, purpose)
    )
    assert block.inputs.get(flag) is True


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
def test_every_bucket_disables_acls(stack_plan: Plan, purpose: str) -> None:
    ownership = attached_to(
        stack_plan, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", bucket(stack_plan, purpose)
    )
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
def test_every_bucket_denies_requests_without_tls(stack_plan: Plan, purpose: str) -> None:
    target = bucket(stack_plan, purpose)
    document = policy_document(attached_to(stack_plan, "aws:s3/bucketPolicy:BucketPolicy", target))
    arn = target.outputs["arn"]
    deny = [
        s
        for s in document["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(deny) == 1
    assert deny[0]["Action"] == "s3:*"
    assert sorted(deny[0]["Resource"]) == sorted([arn, f"{arn}/*"])


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
def test_no_bucket_policy_allows_everyone(stack_plan: Plan, purpose: str) -> None:
    document = policy_document(
        attached_to(stack_plan, "aws:s3/bucketPolicy:BucketPolicy", bucket(stack_plan, purpose))
    )
    allows = [s for s in document["Statement"] if s["Effect"] == "Allow"]
    assert all(s["Principal"] != "*" and s["Principal"] != {"AWS": "*"} for s in allows)


@pytest.mark.parametrize("purpose", DATA_BUCKETS)
def test_data_buckets_log_access_to_the_access_log_bucket(stack_plan: Plan, purpose: str) -> None:
    logging = attached_to(stack_plan, "aws:s3/bucketLogging:BucketLogging", bucket(stack_plan, purpose))
    assert logging.inputs["targetBucket"] == bucket(stack_plan, ACCESS_LOG_BUCKET).outputs["bucket"]
    assert logging.inputs["targetPrefix"] == f"{purpose}/"


def test_log_delivery_may_write_only_for_this_stacks_buckets(stack_plan: Plan) -> None:
    log_bucket = bucket(stack_plan, ACCESS_LOG_BUCKET)
    document = policy_document(attached_to(stack_plan, "aws:s3/bucketPolicy:BucketPolicy", log_bucket))
    (allow,) = [s for s in document["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert allow["Action"] == "s3:PutObject"
    assert allow["Resource"] == f"{log_bucket.outputs['arn']}/*"
    sources = allow["Condition"]["ArnLike"]["aws:SourceArn"]
    assert sorted(sources) == sorted(bucket(stack_plan, purpose).outputs["arn"] for purpose in DATA_BUCKETS)
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"


def lifecycle_rules(plan: Plan, purpose: str) -> list[dict]:
    lifecycle = attached_to(
        plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", bucket(plan, purpose)
    )
    return list(lifecycle.inputs["rules"])


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
def test_every_lifecycle_rule_has_an_explicit_filter(stack_plan: Plan, purpose: str) -> None:
    rules = lifecycle_rules(stack_plan, purpose)
    assert rules
    assert all(rule.get("filter") == {"prefix": ""} and rule["status"] == "Enabled" for rule in rules)


@pytest.mark.parametrize("purpose", ALL_BUCKETS)
def test_every_bucket_aborts_incomplete_multipart_uploads(stack_plan: Plan, purpose: str) -> None:
    aborts = [r for r in lifecycle_rules(stack_plan, purpose) if "abortIncompleteMultipartUpload" in r]
    assert len(aborts) == 1
    assert aborts[0]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7


@pytest.mark.parametrize("purpose", ["raw", "artifacts"])
def test_raw_data_and_model_artifacts_never_expire_by_default(stack_plan: Plan, purpose: str) -> None:
    for rule in lifecycle_rules(stack_plan, purpose):
        assert "expiration" not in rule
        assert "noncurrentVersionExpiration" not in rule


@pytest.mark.parametrize("purpose", DERIVED_BUCKETS)
def test_noncurrent_versions_of_derived_data_expire_after_the_configured_days(
    plan_with, purpose: str
) -> None:
    # GIVEN a stack configured to keep superseded processed data for 45 days
    plan = plan_with(**{"ml-platform:data": {"processedNoncurrentDays": 45}})
    # THEN processed and features expire noncurrent versions after exactly 45 days, current ones never
    rules = lifecycle_rules(plan, purpose)
    expiring = [r for r in rules if "noncurrentVersionExpiration" in r]
    assert [r["noncurrentVersionExpiration"]["noncurrentDays"] for r in expiring] == [45]
    assert all("expiration" not in r for r in rules)


def test_raw_retention_is_applied_only_when_configured(plan_with) -> None:
    plan = plan_with(**{"ml-platform:data": {"rawRetentionDays": 400}})
    expiring = [r for r in lifecycle_rules(plan, "raw") if "expiration" in r]
    assert [r["expiration"]["days"] for r in expiring] == [400]


def test_access_logs_expire_after_their_retention(prod_plan: Plan) -> None:
    expiring = [r for r in lifecycle_rules(prod_plan, ACCESS_LOG_BUCKET) if "expiration" in r]
    assert [r["expiration"]["days"] for r in expiring] == [730]


def test_raw_bucket_sends_its_events_to_eventbridge(stack_plan: Plan) -> None:
    notification = attached_to(
        stack_plan, "aws:s3/bucketNotification:BucketNotification", bucket(stack_plan, "raw")
    )
    assert notification.inputs["eventbridge"] is True


def test_the_data_key_rotates_and_names_no_wildcard_principal(stack_plan: Plan) -> None:
    key = stack_plan.named("data-lake-key")
    assert key.inputs["enableKeyRotation"] is True
    document = policy_document(key)
    principals = [s["Principal"] for s in document["Statement"]]
    assert "*" not in principals and {"AWS": "*"} not in principals
    assert {"AWS": "arn:aws:iam::123456789012:root"} in principals


def test_buckets_have_unique_names_within_s3_limits(stack_plan: Plan) -> None:
    names = [r.outputs["bucket"] for r in stack_plan.of_type(BUCKET)]
    assert len(set(names)) == len(names)
    assert all(3 <= len(name) <= 63 and name == name.lower() for name in names)


def test_every_resource_of_the_component_is_its_child_with_a_derived_name(stack_plan: Plan) -> None:
    component = stack_plan.named("data-lake")
    children = stack_plan.children_of(component)
    named_like_children = [r for r in stack_plan.resources if r.name.startswith("data-lake-")]
    assert children == named_like_children
    assert len(children) == 42


def test_stack_outputs_name_every_bucket_its_arn_and_the_key(stack_plan: Plan) -> None:
    outputs = stack_plan.outputs
    assert set(outputs["bucketNames"]) == set(ALL_BUCKETS)
    for purpose in ALL_BUCKETS:
        assert outputs["bucketArns"][purpose] == f"arn:aws:s3:::{outputs['bucketNames'][purpose]}"
    assert outputs["kmsKeyArn"] == stack_plan.named("data-lake-key").outputs["arn"]


def test_every_resource_carries_the_cost_allocation_tags(stack_plan: Plan) -> None:
    provider = stack_plan.named("aws")
    tags = provider.inputs["defaultTags"]
    tags = tags if isinstance(tags, dict) else json.loads(tags)
    assert tags["tags"]["ml-platform:environment"] == stack_plan.outputs["environment"]
    assert "ml-platform:stack" in tags["tags"]
