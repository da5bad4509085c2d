"""Alerts: the encrypted SNS topic every alarm of the stack notifies (and an optional email)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.context import StackIdentity
from infra.iam import policy_document

COMPONENT_TYPE = "mlplatform:index:Alerts"
# Services that publish alarms and events to the topic.
PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com")


@dataclass
class AlertsArgs:
    """Inputs of :class:`Alerts`: the stack (prefix, account), key and the optional email address."""

    stack: StackIdentity
    kms_key_arn: pulumi.Input[str]
    email: str | None = None


class Alerts(pulumi.ComponentResource):
    """One topic for the stack's alarms; only this account's alarms and rules may publish."""

    topic: aws.sns.Topic

    def __init__(self, name: str, args: AlertsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.topic = aws.sns.Topic(
            f"{name}-topic",
            name=f"{args.stack.name_prefix}-alerts",
            kms_master_key_id=args.kms_key_arn,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=self.topic.arn,
            policy=policy_document(
                {
                    "Sid": "AlarmsAndRulesOfThisAccountPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": list(PUBLISHERS)},
                    "Action": "sns:Publish",
                    "Resource": self.topic.arn,
                    "Condition": {"StringEquals": {"aws:SourceAccount": args.stack.account_id}},
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": {"AWS": "*"},
                    "Action": "sns:Publish",
                    "Resource": self.topic.arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ),
            opts=child,
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{name}-email", topic=self.topic.arn, protocol="email", endpoint=args.email, opts=child
            )
        self.register_outputs({"topicArn": self.topic.arn})
