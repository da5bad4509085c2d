"""Which S3 object an event is about, whatever the event's shape.

Shapes: an S3 notification (``Records[].s3``, keys URL-encoded with ``+`` for spaces, as S3
documents), an EventBridge "Object Created" event (``detail.bucket.name``, ``detail.object.key``,
``detail.object.version-id``), and either of them as the body of an SQS message (handled by the
batch handler's SQS path). S3's ``s3:TestEvent`` (sent when a notification is configured) names
no object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from handlers.preprocess.errors import UnsupportedEventError


@dataclass(frozen=True)
class SourceObject:
    """One object version to read: ``version_id`` when the bucket is versioned, else the ETag."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    # EventBridge may or may not URL-encode keys; the reader tries this spelling second.
    alternative_key: str | None = None

    @property
    def revision(self) -> str:
        """What names this exact content in output keys: the version id, or the ETag."""
        revision = self.version_id or (self.etag or "").strip('"')
        if not revision:
            raise UnsupportedEventError(f"the event names no version id or ETag for {self.key!r}")
        return revision


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return bool(records) and isinstance(records, list) and records[0].get("eventSource") == "aws:sqs"


def objects_in(event: Mapping[str, Any]) -> list[SourceObject]:
    """The objects an S3 notification or an EventBridge event announces ([] for a test event)."""
    if event.get("Event") == "s3:TestEvent":
        return []
    if isinstance(event.get("Records"), list):
        return [_from_notification(record) for record in event["Records"]]
    if event.get("source") == "aws.s3" and isinstance(event.get("detail"), Mapping):
        return [_from_eventbridge(event["detail"])]
    raise UnsupportedEventError("not an S3 notification or an EventBridge S3 event")


def _from_notification(record: Mapping[str, Any]) -> SourceObject:
    try:
        bucket, obj = record["s3"]["bucket"]["name"], record["s3"]["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError):
        raise UnsupportedEventError(
            "an S3 notification record without s3.bucket.name / s3.object.key"
        ) from None
    return SourceObject(bucket=bucket, key=key, version_id=obj.get("versionId"), etag=obj.get("eTag"))


def _from_eventbridge(detail: Mapping[str, Any]) -> SourceObject:
    try:
        bucket, obj = detail["bucket"]["name"], detail["object"]
        key = obj["key"]
    except (KeyError, TypeError):
        raise UnsupportedEventError("an EventBridge S3 event without bucket.name / object.key") from None
    decoded = unquote_plus(key)
    return SourceObject(
        bucket=bucket,
        key=key,
        version_id=obj.get("version-id"),
        etag=obj.get("etag"),
        alternative_key=decoded if decoded != key else None,
    )
