"""Batch preprocessing: a raw object lands under ``raw/`` -> clean JSONL in the processed bucket.

Good records go to ``processed/<path>/<version>/``, bad ones with their reason to ``quarantine/``;
an existing output means "done", so a replayed event writes nothing. Events (S3, EventBridge, SQS),
outputs and environment: docs/api.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from handlers.common.aws_clients import LazyClient, botocore_client
from handlers.common.contracts import METRICS_NAMESPACE
from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import AnyInputSchema, load_input_schema
from handlers.preprocess.errors import SourceObjectError
from handlers.preprocess.records import CleanBatch, clean, record_format
from handlers.preprocess.s3_events import SourceObject, is_sqs_event, objects_in
from handlers.preprocess.settings import DEFAULT_MAX_OBJECT_BYTES, MAX_OBJECT_BYTES_ENV, PROCESSED_BUCKET_ENV

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RAW_PREFIX = "raw/"
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "preprocess-batch"))
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics(namespace=METRICS_NAMESPACE)
s3_client: LazyClient[S3Client] = LazyClient(lambda: cast("S3Client", botocore_client("s3")))
sqs_processor = BatchProcessor(event_type=EventType.SQS)


@dataclass(frozen=True)
class Summary:
    source: str
    processed: int
    quarantined: int
    duplicates: int
    output_key: str | None
    quarantine_key: str | None
    replayed: bool


@cache
def input_schema() -> AnyInputSchema:
    return load_input_schema(s3_client_factory=s3_client.get)


def processed_bucket() -> str:
    bucket = os.environ.get(PROCESSED_BUCKET_ENV, "")
    if not bucket:
        raise ConfigurationError(f"{PROCESSED_BUCKET_ENV} is not set")
    return bucket


def output_keys(source: SourceObject, key: str) -> tuple[str, str]:
    """(output key, quarantine key) for one source object version."""
    relative = key.removeprefix(RAW_PREFIX)
    return (
        f"processed/{relative}/{source.revision}/part-0000.jsonl",
        f"quarantine/{relative}/{source.revision}/rejected.jsonl",
    )


@tracer.capture_method(capture_response=False)
def process_object(source: SourceObject) -> Summary:
    """Clean one raw object version into the processed bucket (nothing is written on a replay)."""
    s3, bucket = s3_client.get(), processed_bucket()
    if not source.key.startswith(RAW_PREFIX):
        logger.warning("ignoring an object outside raw/", extra={"key": source.key})
        metrics.add_metric(name="ObjectsIgnored", unit=MetricUnit.Count, value=1)
        return Summary(f"s3://{source.bucket}/{source.key}", 0, 0, 0, None, None, replayed=False)
    output_key, quarantine_key = output_keys(source, source.key)
    done = _existing_output(s3, bucket, output_key)
    if done is not None:
        logger.info("replay: output exists, nothing written", extra={"output_key": output_key})
        metrics.add_metric(name="ObjectsReplayed", unit=MetricUnit.Count, value=1)
        return _summary_from_metadata(source, output_key, quarantine_key, done)

    key, data = _read_version(s3, source)
    batch = clean(data, record_format(key), input_schema())
    counts = {
        "processed": len(batch.lines),
        "quarantined": len(batch.rejected),
        "duplicates": batch.duplicates,
    }
    if batch.rejected:
        s3.put_object(
            Bucket=bucket,
            Key=quarantine_key,
            Body=batch.quarantine_bytes(),
            ContentType="application/x-ndjson",
        )
    s3.put_object(
        Bucket=bucket,
        Key=output_key,
        Body=batch.output_bytes(),
        ContentType="application/x-ndjson",
        Metadata={"source": quote(f"s3://{source.bucket}/{key}"), **{k: str(v) for k, v in counts.items()}},
    )
    _record_metrics(batch)
    summary = Summary(
        source=f"s3://{source.bucket}/{key}",
        output_key=output_key,
        quarantine_key=quarantine_key if batch.rejected else None,
        replayed=False,
        **counts,
    )
    logger.info("object preprocessed", extra=asdict(summary))
    return summary


def _existing_output(s3: S3Client, bucket: str, key: str) -> dict[str, str] | None:
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise


def _read_version(s3: S3Client, source: SourceObject) -> tuple[str, bytes]:
    """The exact version the event announced (by version id, else by ETag); (key, bytes)."""
    limit = int(os.environ.get(MAX_OBJECT_BYTES_ENV, "") or DEFAULT_MAX_OBJECT_BYTES)
    keys = [source.key] + ([source.alternative_key] if source.alternative_key else [])
    for attempt, key in enumerate(keys, start=1):
        request: dict[str, Any] = {"Bucket": source.bucket, "Key": key}
        if source.version_id:
            request["VersionId"] = source.version_id
        elif source.etag:
            request["IfMatch"] = f'"{source.etag.strip(chr(34))}"'
        try:
            response = s3.get_object(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _MISSING and attempt < len(keys):
                continue
            if code == "PreconditionFailed":
                raise SourceObjectError(
                    f"{key!r} changed after the event; not processing a newer copy"
                ) from exc
            raise
        if response.get("ContentLength", 0) > limit:
            raise SourceObjectError(f"{key!r} is larger than {MAX_OBJECT_BYTES_ENV}={limit}")
        return key, response["Body"].read()
    raise SourceObjectError(f"{source.key!r} cannot be read")  # unreachable: the loop returns or raises


def _summary_from_metadata(
    source: SourceObject, output_key: str, quarantine_key: str, metadata: dict[str, str]
) -> Summary:
    quarantined = int(metadata.get("quarantined", "0"))
    return Summary(
        source=f"s3://{source.bucket}/{source.key}",
        processed=int(metadata.get("processed", "0")),
        quarantined=quarantined,
        duplicates=int(metadata.get("duplicates", "0")),
        output_key=output_key,
        quarantine_key=quarantine_key if quarantined else None,
        replayed=True,
    )


def _record_metrics(batch: CleanBatch) -> None:
    metrics.add_metric(name="RecordsProcessed", unit=MetricUnit.Count, value=len(batch.lines))
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=len(batch.rejected))
    metrics.add_metric(name="DuplicatesDropped", unit=MetricUnit.Count, value=batch.duplicates)


def _sqs_record(record: SQSRecord) -> list[dict[str, Any]]:
    # A failure raises, and the BatchProcessor reports just this message as failed.
    return [asdict(process_object(source)) for source in objects_in(record.json_body)]


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_event(event):
        response = process_partial_response(
            event=event, record_handler=_sqs_record, processor=sqs_processor, context=context
        )
        return dict(response)
    try:
        summaries = [asdict(process_object(source)) for source in objects_in(event)]
    except Exception:
        # Lambda retries, then hands the event to the failure destination; this metric alarms.
        metrics.add_metric(name="ObjectsFailed", unit=MetricUnit.Count, value=1)
        raise
    if len(summaries) == 1:
        return summaries[0]
    return {"objects": summaries}
