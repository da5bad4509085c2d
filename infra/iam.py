"""Policy-document building blocks shared by every component (JSON built with Output.json_dumps)."""

from __future__ import annotations

import pulumi


def account_root_arn(partition: pulumi.Input[str], account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """``arn:<partition>:iam::<account>:root``: the account itself, never a wildcard principal."""
    return pulumi.Output.concat("arn:", partition, ":iam::", account_id, ":root")


def tls_only_statements(bucket_arn: pulumi.Input[str]) -> list[dict[str, object]]:
    """Deny every request to the bucket and its objects that does not arrive over TLS."""
    return [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            # Same meaning as "*"; the object form is what moto's log-delivery check can parse.
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def service_assume_role_policy(service: str, account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """Trust ``service`` only when it acts for this account (confused-deputy protection)."""
    return pulumi.Output.json_dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        }
    )


def policy_document(*statements: dict[str, object]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def volume_key_grant_statement(kms_key_arn: pulumi.Input[str]) -> dict[str, object]:
    """SageMaker encrypts job and endpoint volumes through grants on the key, for AWS resources only."""
    return {
        "Sid": "GrantVolumeEncryption",
        "Effect": "Allow",
        "Action": "kms:CreateGrant",
        "Resource": kms_key_arn,
        "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
    }


def container_statements(
    repository_arns: pulumi.Input[list[str]] | pulumi.Input[str], metric_namespaces: list[str]
) -> list[dict[str, object]]:
    """What a SageMaker container role needs beyond data: pull its images and publish metrics."""
    return [
        {
            # The registry token call has no resource; image pulls are scoped below.
            "Sid": "AuthenticateToImageRegistry",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "PullImages",
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            "Resource": repository_arns,
        },
        {
            # PutMetricData has no resource-level permissions: the namespace condition scopes it.
            "Sid": "PublishMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": metric_namespaces}},
        },
    ]
