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
