"""After a verified deployment: publish the served version's input schema and drift baseline.

The prediction API reads ``input-schema.json`` and the drift monitor ``baseline.json`` from one
fixed place, ``SERVING_FILES_S3_URI`` (the stack's ``artifacts/serving/``). Training writes both
into the model, and the pipeline's evaluate step copies them next to the version's evaluation
report (``training_jobs.evaluate``), which the registry entry points at. So publishing is two
copies of small S3 objects, made once the endpoint serves the version: the files always describe
the model that answers, and a rolled-back deployment leaves them as they were.

A version may come without either file (a model registered from elsewhere with no input schema or
baseline): the published one is then withdrawn, never left describing another model. Without a
schema the API passes requests through to the model; without a baseline the drift monitor builds
one from the first captured requests.
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
    """Where the version's serving files are, as (bucket, key): next to its evaluation report.
    None when the version has no report (then it has no serving files either)."""
    if not model.evaluation_report_uri:
        return {}
    bucket, key = split_s3_uri(model.evaluation_report_uri)
    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    return {name: (bucket, f"{folder}/{name}" if folder else name) for name in SERVING_FILES}


def publish_serving_files(s3: S3Client | Any, model: ModelVersion, destination_uri: str) -> list[str]:
    """Make ``destination_uri`` hold the version's serving files: each it has is copied there, each
    it lacks is deleted there. Returns the URIs written.

    Raises :class:`ServingFilesError` when S3 refuses a read, copy or delete (nothing is changed
    when a source cannot be read).
    """
    bucket, prefix = split_s3_uri(destination_uri)
    sources = serving_file_sources(model)
    present = {name: location for name, location in sources.items() if _exists(s3, *location, model)}
    written = []
    for name in SERVING_FILES:
        target_key = f"{prefix}/{name}" if prefix else name
        if name not in present:
            _call(
                s3.delete_object, f"cannot withdraw s3://{bucket}/{target_key}", Bucket=bucket, Key=target_key
            )
            continue
        source_bucket, source_key = present[name]
        _call(
            s3.copy_object,
            f"cannot copy s3://{source_bucket}/{source_key} to s3://{bucket}/{target_key}",
            CopySource={"Bucket": source_bucket, "Key": source_key},
            Bucket=bucket,
            Key=target_key,
        )
        written.append(f"s3://{bucket}/{target_key}")
    return written


def _exists(s3: Any, bucket: str, key: str, model: ModelVersion) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise ServingFilesError(f"s3://{bucket}/{key} of model version {model.label}: {code}") from exc
    return True


def _call(operation: Any, what: str, **params: Any) -> None:
    try:
        operation(**params)
    except ClientError as exc:
        raise ServingFilesError(f"{what}: {exc.response.get('Error', {}).get('Code', 'Unknown')}") from exc
