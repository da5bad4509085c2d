"""BatchPreprocessing: objects landing under ``raw/`` are cleaned into the processed bucket.

The batch Lambda (``handlers.preprocess``) is started by EventBridge when an object is created under
``raw/`` in the raw bucket, with bounded retries and an encrypted, TLS-only dead-letter queue.
Bad records go to ``quarantine/`` with their reason (docs/api.md describes the function).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.common.contracts import INPUT_SCHEMA_KEY, METRICS_NAMESPACE
from handlers.common.input_schema import SCHEMA_URI_ENV
from handlers.preprocess.settings import PROCESSED_BUCKET_ENV
from infra.context import StackIdentity
from infra.data_lake import RAW_PREFIX, raw_data_created_pattern
from infra.functions import FunctionBuilder, FunctionSettings
from infra.iam import policy_document
from infra.lambda_code import previous_parent_alias
from infra.lambda_package import HANDLER_ENTRYPOINTS

COMPONENT_TYPE = "mlplatform:index:BatchPreprocessing"
# These resources were first declared by the API component: their logical names keep its prefix,
# and every one carries an alias to its old parent, so a stack deployed before keeps them.
RESOURCE_PREFIX = "api"
PROCESSED_PREFIXES = ("processed/", "quarantine/")
# Batch preprocessing: objects up to 256 MiB are read whole, so the function gets room for them.
BATCH_MEMORY_MB = 2048
BATCH_TIMEOUT_SECONDS = 300
BATCH_RESERVED_CONCURRENCY = 10
BATCH_MAX_RETRIES = 2  # Lambda's async retries (at most 2); then the event goes to the DLQ
BATCH_MAX_EVENT_AGE_SECONDS = 6 * 3600
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum: time to inspect and replay failures


@dataclass
class BatchPreprocessingArgs:
    """Inputs of :class:`BatchPreprocessing`.

    Parameters
    ----------
    stack: where it runs (name prefix, region, account, partition).
    kms_key_arn: the stack key: the dead-letter queue, logs and the function's environment use it.
    bucket_names, bucket_arns: the data lake's buckets, by purpose (raw, processed, artifacts...).
    functions: the stack's shared Lambda settings (code, layer, logs).
    """

    stack: StackIdentity
    kms_key_arn: pulumi.Input[str]
    bucket_names: dict[str, pulumi.Output[str]]
    bucket_arns: dict[str, pulumi.Output[str]]
    functions: FunctionSettings


class BatchPreprocessing(pulumi.ComponentResource):
    """The batch preprocessing function, its trigger on new raw data and its dead-letter queue."""

    function: aws.lambda_.Function
    dead_letter_queue: aws.sqs.Queue

    def __init__(
        self, name: str, args: BatchPreprocessingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._args = args
        self._moved = previous_parent_alias()
        self._functions = FunctionBuilder(self, RESOURCE_PREFIX, args.functions, aliases=[self._moved])
        self.input_schema_uri = pulumi.Output.concat(
            "s3://", args.bucket_names["artifacts"], "/", INPUT_SCHEMA_KEY
        )
        self.input_schema_arn = pulumi.Output.concat(args.bucket_arns["artifacts"], "/", INPUT_SCHEMA_KEY)
        self.dead_letter_queue = self._dead_letter_queue()
        # The queue's id is its URL (the provider's import key), and is known offline too.
        self.dead_letter_queue_url: pulumi.Output[str] = self.dead_letter_queue.id
        self.function = self._batch_function()
        self._batch_trigger()
        self.register_outputs(
            {
                "functionName": self.function.name,
                "functionArn": self.function.arn,
                "deadLetterQueueUrl": self.dead_letter_queue_url,
            }
        )

    def _child(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, aliases=[self._moved], **kwargs)

    def _dead_letter_queue(self) -> aws.sqs.Queue:
        args = self._args
        queue = aws.sqs.Queue(
            f"{RESOURCE_PREFIX}-preprocess-dlq",
            name=f"{args.stack.name_prefix}-preprocess-batch-dlq",
            kms_master_key_id=args.kms_key_arn,
            kms_data_key_reuse_period_seconds=300,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            opts=self._child(),
        )
        aws.sqs.QueuePolicy(
            f"{RESOURCE_PREFIX}-preprocess-dlq-policy",
            queue_url=queue.id,
            policy=policy_document(
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": {"AWS": "*"},
                    "Action": "sqs:*",
                    "Resource": queue.arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ),
            opts=self._child(),
        )
        return queue

    def _batch_function(self) -> aws.lambda_.Function:
        args = self._args
        arns = args.bucket_arns
        processed_objects = [pulumi.Output.concat(arns["processed"], "/", p, "*") for p in PROCESSED_PREFIXES]
        function = self._functions.function(
            "preprocess-batch",
            handler=HANDLER_ENTRYPOINTS["preprocess"],
            description="Cleans objects landing under raw/ into processed/ (bad records to quarantine/)",
            memory_mb=BATCH_MEMORY_MB,
            timeout_seconds=BATCH_TIMEOUT_SECONDS,
            reserved_concurrency=BATCH_RESERVED_CONCURRENCY,
            environment={
                PROCESSED_BUCKET_ENV: args.bucket_names["processed"],
                SCHEMA_URI_ENV: self.input_schema_uri,
                "POWERTOOLS_SERVICE_NAME": "preprocess-batch",
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            },
            statements=[
                {
                    "Sid": "ReadRawObjects",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": pulumi.Output.concat(arns["raw"], "/", RAW_PREFIX, "*"),
                },
                {
                    "Sid": "ReadInputSchema",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": self.input_schema_arn,
                },
                {
                    # GetObject backs the HeadObject of the idempotency check (an existing output = done).
                    "Sid": "WriteProcessedAndQuarantine",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject"],
                    "Resource": processed_objects,
                },
                {
                    # Without it a missing output reads as 403, not 404, and the idempotency check fails.
                    "Sid": "TellMissingOutputs",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": arns["processed"],
                },
                {
                    "Sid": "UseStackKey",
                    "Effect": "Allow",
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": args.kms_key_arn,
                },
                {
                    # Lambda delivers failed async events to the destination with the function's role.
                    "Sid": "SendFailuresToDeadLetterQueue",
                    "Effect": "Allow",
                    "Action": "sqs:SendMessage",
                    "Resource": self.dead_letter_queue.arn,
                },
            ],
        )
        aws.lambda_.FunctionEventInvokeConfig(
            f"{RESOURCE_PREFIX}-preprocess-batch-async",
            function_name=function.name,
            maximum_retry_attempts=BATCH_MAX_RETRIES,
            maximum_event_age_in_seconds=BATCH_MAX_EVENT_AGE_SECONDS,
            destination_config={"on_failure": {"destination": self.dead_letter_queue.arn}},
            opts=self._child(),
        )
        return function

    def _batch_trigger(self) -> None:
        args = self._args
        self._functions.event_trigger(
            "preprocess-new-data",
            f"{args.stack.name_prefix}-preprocess-new-data",
            "Preprocesses each object created under raw/ in the raw bucket",
            self.function,
            pattern=raw_data_created_pattern(args.bucket_names["raw"]),
        )
