"""SageMaker data capture written locally: the same JSON lines at the same S3 keys as an endpoint's,
best effort, never blocking a prediction (docs/local-platform.md).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handlers.common.s3_uri import S3Uri

logger = logging.getLogger(__name__)

DEFAULT_MAX_RECORDS = 1000
JSON_CONTENT_TYPES = frozenset({"application/json"})  # infra/serving.py's capture_content_type_header
CSV_CONTENT_TYPES = frozenset({"text/csv"})


@dataclass(frozen=True)
class Invocation:
    """One successful InvokeEndpoint call, as capture sees it."""

    endpoint: str
    variant: str
    input_body: bytes
    input_type: str
    output_body: bytes
    output_type: str
    inference_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class CaptureStats:
    records: int = 0
    objects_written: int = 0
    write_errors: int = 0
    records_dropped: int = 0


def capture_block(body: bytes, content_type: str, mode: str) -> dict[str, str]:
    """An ``endpointInput``/``endpointOutput`` block: JSON and CSV as text, anything else BASE64."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    encoding = "JSON" if media in JSON_CONTENT_TYPES else "CSV" if media in CSV_CONTENT_TYPES else "BASE64"
    data: str | None = None
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"  # SageMaker falls back the same way for undecodable text
    if data is None:
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def capture_line(invocation: Invocation) -> str:
    """The JSON line SageMaker writes for one invocation."""
    metadata: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "inferenceTime": invocation.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if invocation.inference_id:
        metadata["inferenceId"] = invocation.inference_id
    document = {
        "captureData": {
            "endpointInput": capture_block(invocation.input_body, invocation.input_type, "INPUT"),
            "endpointOutput": capture_block(invocation.output_body, invocation.output_type, "OUTPUT"),
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }
    return json.dumps(document, separators=(",", ":"))


def capture_key(prefix: str, endpoint: str, variant: str, first: datetime) -> str:
    """SageMaker's object key for a file whose first record is from ``first``."""
    moment = first.astimezone(UTC)
    name = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    parts = [p for p in (prefix.strip("/"), endpoint, variant, f"{moment:%Y/%m/%d/%H}", name) if p]
    return "/".join(parts)


_BufferKey = tuple[str, str, str, str]  # destination, endpoint, variant, hour


@dataclass
class _Buffer:
    first: datetime
    lines: list[str] = field(default_factory=list)


class CaptureWriter:
    """Buffers captured lines per (destination, endpoint, variant, hour) and writes them to S3.

    ``flush()`` writes every buffer now (the emulator calls it periodically and at shutdown); a
    buffer reaching ``max_records`` is written by a background thread so the caller never waits
    for S3. ``record(..., destination=...)`` overrides the default destination (an endpoint
    config with its own ``DestinationS3Uri``).
    """

    def __init__(
        self,
        s3_client: Any,
        destination_s3_uri: str,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        S3Uri.parse(destination_s3_uri)  # fail at construction, not at the first flush
        self._s3 = s3_client
        self.destination = destination_s3_uri
        self.max_records = max_records
        self.stats = CaptureStats()
        self._lock = threading.Lock()
        self._buffers: dict[_BufferKey, _Buffer] = {}
        self._full: queue.Queue[tuple[_BufferKey, _Buffer] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_full_buffers, name="capture-writer", daemon=True)
        self._closed = False
        self._writer.start()

    def record(self, invocation: Invocation, destination: str | None = None) -> None:
        """Buffer one invocation's line (cheap: JSON encoding and a dict append)."""
        if self._closed:
            return
        line = capture_line(invocation)
        moment = invocation.at.astimezone(UTC)
        key = (
            destination or self.destination,
            invocation.endpoint,
            invocation.variant,
            f"{moment:%Y%m%d%H}",
        )
        with self._lock:
            self.stats.records += 1
            buffer = self._buffers.setdefault(key, _Buffer(moment))
            buffer.lines.append(line)
            if len(buffer.lines) >= self.max_records:
                self._full.put((key, self._buffers.pop(key)))

    @property
    def buffered(self) -> int:
        """Records waiting for a flush (a full buffer handed to the background writer is not)."""
        with self._lock:
            return sum(len(buffer.lines) for buffer in self._buffers.values())

    def flush(self) -> None:
        """Write every buffered line now (synchronously: the caller knows the objects exist)."""
        with self._lock:
            pending, self._buffers = self._buffers, {}
        for key, buffer in pending.items():
            self._write(key, buffer)

    def close(self) -> None:
        """Flush, then stop the background writer once it wrote what it was handed."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        self._full.put(None)
        self._writer.join()

    def _write_full_buffers(self) -> None:
        while (item := self._full.get()) is not None:
            self._write(*item)

    def _write(self, key: _BufferKey, buffer: _Buffer) -> None:
        destination, endpoint, variant, _ = key
        location = S3Uri.parse(destination)
        bucket, prefix = location.bucket, location.prefix
        object_key = capture_key(prefix, endpoint, variant, buffer.first)
        body = ("\n".join(buffer.lines) + "\n").encode()
        try:
            self._s3.put_object(Bucket=bucket, Key=object_key, Body=body, ContentType="application/jsonl")
        except Exception:  # S3 down, bucket missing, KMS: capture must never take serving down
            logger.exception("data capture: could not write s3://%s/%s", bucket, object_key)
            self._count(write_errors=1, records_dropped=len(buffer.lines))
            return
        self._count(objects_written=1)

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)


__all__ = ["CaptureStats", "CaptureWriter", "Invocation", "capture_key", "capture_line"]
