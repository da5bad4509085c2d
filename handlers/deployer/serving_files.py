"""After a verified deployment: publish the served version's input schema and drift baseline.

The prediction API reads ``input-schema.json`` and the drift monitor ``baseline.json`` from one
fixed place, ``SERVING_FILES_S3_URI`` (the stack's ``artifacts/serving/``). Training writes both
into the model, and the pipeline's evaluate step copies them next to the version's evaluation
report (``training_jobs.evaluate``), which the registry entry points at. So publishing is two
copies of small S3 objects, made once the endpoint serves the version: the files always describe
the model that answers, and a rolled-back deployment leaves them as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from handlers.common.contracts import SERVING_FILES
from handlers.common.s3_uri import S3Uri
from handlers.registry.client import ModelVersion

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ServingFilesError(RuntimeError):
    """The serving files of a version could not be published; the message says which and why."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> (``bucket``, ``some/key``); a bad URI is a ServingFilesError."""
    try:
        location = S3Uri.parse(uri)
    except ValueError as exc:
        raise ServingFilesError(str(exc)) from None
    return location.bucket, location.prefix


def serving_file_sources(model: ModelVersion) -> dict[str, tuple[str, str]]:
    """Where the version's serving files are, as (bucket, key): next to its evaluation report."""
    if not model.evaluation_report_uri:
        raise ServingFilesError(f"model version {model.label} has no evaluation report to find them by")
    bucket, key = split_s3_uri(model.evaluation_report_uri)
    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    return {name: (bucket, f"{folder}/{name}" if folder else name) for name in SERVING_FILES}


def publish_serving_files(s3: S3Client | Any, model: ModelVersion, destination_uri: str) -> list[str]:
    """Copy the version's serving files to ``destination_uri``; returns the URIs written.

    Raises :class:`ServingFilesError` when a file is missing or S3 refuses a copy.
    """
    bucket, prefix = split_s3_uri(destination_uri)
    sources = serving_file_sources(model)
    for source_bucket, source_key in sources.values():  # all there, or nothing is replaced
        _call(s3.head_object, f"s3://{source_bucket}/{source_key} of model version {model.label}",
              Bucket=source_bucket, Key=source_key)  # fmt: skip
    written = []
    for name, (source_bucket, source_key) in sources.items():
        target_key = f"{prefix}/{name}" if prefix else name
        _call(
            s3.copy_object,
            f"cannot copy s3://{source_bucket}/{source_key} to s3://{bucket}/{target_key}",
            CopySource={"Bucket": source_bucket, "Key": source_key},
            Bucket=bucket,
            Key=target_key,
        )
        written.append(f"s3://{bucket}/{target_key}")
    return written


def _call(operation: Any, what: str, **params: Any) -> None:
    try:
        operation(**params)
    except ClientError as exc:
        raise ServingFilesError(f"{what}: {exc.response.get('Error', {}).get('Code', 'Unknown')}") from exc
