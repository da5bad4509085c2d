"""The DataLake as the program declares it, applied to moto's S3 and KMS: AWS accepts every setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.provision import AppliedStack, LocalApplier
from infra.data_lake import ACCESS_LOG_BUCKET, DATA_BUCKETS
from infra.offline import Plan, run_offline
from training_jobs import datasets

REGION = "us-east-1"


@pytest.fixture(scope="module")
def dev_plan() -> Plan:
    return run_offline("dev")


@pytest.fixture
def applied(aws: dict[str, Any], dev_plan: Plan) -> AppliedStack:
    # The data lake's services only: the stack's own EventBridge rules would stand in the way of
    # the rule a test puts there itself.
    data_lake = {service: aws[service] for service in ("s3", "kms", "sagemaker", "sns")}
    return LocalApplier(data_lake, REGION).apply(dev_plan)


def test_every_planned_bucket_exists_under_the_programs_name(
    aws, dev_plan: Plan, applied: AppliedStack
) -> None:
    names = {bucket["Name"] for bucket in aws["s3"].list_buckets()["Buckets"]}
    assert names == set(dev_plan.outputs["bucketNames"].values())
    # AND every resource of the data lake was created (other components are not emulated yet)
    data_lake = dev_plan.named("data-lake")
    assert {f"{r.type} {r.name}" for r in dev_plan.children_of(data_lake)} <= set(applied.created)


@pytest.mark.parametrize("purpose", DATA_BUCKETS)
def test_data_buckets_are_encrypted_with_the_created_key(
    aws, dev_plan: Plan, applied: AppliedStack, purpose: str
) -> None:
    bucket = dev_plan.outputs["bucketNames"][purpose]
    (rule,) = aws["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    key_arn = rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    # the planned key ARN was replaced by the one the emulator created, and that key rotates
    assert key_arn == applied.resolve(dev_plan.outputs["kmsKeyArn"]) != dev_plan.outputs["kmsKeyArn"]
    assert aws["kms"].get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    assert rule["BucketKeyEnabled"] is True


@pytest.mark.parametrize("purpose", [*DATA_BUCKETS, ACCESS_LOG_BUCKET])
def test_every_bucket_is_versioned_and_private(
    aws, dev_plan: Plan, applied: AppliedStack, purpose: str
) -> None:
    s3 = aws["s3"]
    bucket = dev_plan.outputs["bucketNames"][purpose]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_only_the_conditional_tls_deny_is_left_to_aws(dev_plan: Plan, applied: AppliedStack) -> None:
    # moto ignores policy conditions; the TLS-only statements are the one documented gap, one per bucket
    expected = sorted(
        f"{name}: DenyInsecureTransport (conditional deny)"
        for name in dev_plan.outputs["bucketNames"].values()
    )
    assert sorted(applied.emulator_gaps) == expected


def test_lifecycle_rules_are_accepted_as_declared(aws, dev_plan: Plan, applied: AppliedStack) -> None:
    rules = aws["s3"].get_bucket_lifecycle_configuration(Bucket=dev_plan.outputs["bucketNames"]["processed"])[
        "Rules"
    ]
    by_id = {rule["ID"]: rule for rule in rules}
    assert by_id["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert by_id["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30


def test_new_raw_data_matches_the_rule_that_starts_training(
    aws, dev_plan: Plan, applied: AppliedStack, tmp_path: Path
) -> None:
    # GIVEN the training pipeline's new-data rule as the program declares it, delivering to a queue
    # (moto cannot start a pipeline: the queue stands in for the target)
    raw = dev_plan.outputs["bucketNames"]["raw"]
    queue_url = aws["sqs"].create_queue(QueueName="raw-events")["QueueUrl"]
    queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = dev_plan.named("training-new-data").inputs
    aws["events"].put_rule(Name=rule["name"], EventPattern=rule["eventPattern"])
    aws["events"].put_targets(Rule=rule["name"], Targets=[{"Id": "pipeline", "Arn": queue_arn}])
    # WHEN the platform's own raw file lands under raw/, and another object lands outside it
    raw_file = datasets.write_raw("digits", tmp_path)
    key = f"raw/batch-1/{raw_file.name}"
    version = aws["s3"].put_object(Bucket=raw, Key=key, Body=raw_file.read_bytes())["VersionId"]
    aws["s3"].put_object(Bucket=raw, Key="notes/readme.txt", Body=b"not training data")
    # THEN exactly one event matches: the raw file's, naming the version the trigger passes on
    # as the pipeline's DatasetVersion
    messages = aws["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    (detail,) = [json.loads(message["Body"])["detail"] for message in messages]
    assert detail["bucket"]["name"] == raw
    assert detail["object"]["key"] == key
    assert detail["object"]["version-id"] == version


def test_data_buckets_log_access_to_the_log_bucket(aws, dev_plan: Plan, applied: AppliedStack) -> None:
    raw = dev_plan.outputs["bucketNames"]["raw"]
    logging = aws["s3"].get_bucket_logging(Bucket=raw)["LoggingEnabled"]
    assert logging["TargetBucket"] == dev_plan.outputs["bucketNames"][ACCESS_LOG_BUCKET]
    assert logging["TargetPrefix"] == "raw/"


def test_objects_written_to_raw_keep_every_version(aws, dev_plan: Plan, applied: AppliedStack) -> None:
    # GIVEN the raw bucket WHEN the same key is written twice THEN both versions are kept (nothing is lost)
    raw = dev_plan.outputs["bucketNames"]["raw"]
    aws["s3"].put_object(Bucket=raw, Key="raw/data.csv", Body=b"a,b\n1,2\n")
    aws["s3"].put_object(Bucket=raw, Key="raw/data.csv", Body=b"a,b\n3,4\n")
    versions = aws["s3"].list_object_versions(Bucket=raw, Prefix="raw/data.csv")["Versions"]
    assert len(versions) == 2
    head = aws["s3"].head_object(Bucket=raw, Key="raw/data.csv")
    assert head["ServerSideEncryption"] == "aws:kms"


def test_applying_twice_is_refused_by_aws_not_silently_merged(
    aws, dev_plan: Plan, applied: AppliedStack
) -> None:
    with pytest.raises(ClientError) as caught:
        LocalApplier(aws, REGION).apply(dev_plan)
    assert caught.value.response["Error"]["Code"] in {
        "BucketAlreadyOwnedByYou",
        "BucketAlreadyExists",
        "AlreadyExistsException",
    }
