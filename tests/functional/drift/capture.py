"""Synthetic SageMaker data capture in the real format, written where SageMaker writes it.

``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<time>-<uuid>.jsonl``; one JSON line per
request, with the request and the response as SageMaker records them (``encoding`` ``JSON`` for
the JSON content types the endpoint config names, ``BASE64`` for the others, ``CSV`` for text/csv).
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from handlers.common.s3_uri import S3Uri


def capture_line(
    instances: Sequence[Any],
    confidences: Sequence[float],
    when: datetime,
    *,
    encoding: str = "JSON",
    labels: Sequence[str] = ("low", "high"),
    rng: random.Random | None = None,
) -> str:
    """One captured request: ``{"instances": ...}`` in, the inference handler's answer out."""
    rng = rng or random.Random(0)
    body = json.dumps({"instances": list(instances)})
    data = base64.b64encode(body.encode()).decode() if encoding == "BASE64" else body
    answer = {
        "model": "tabular-mlp",
        "predictions": [{"label": rng.choice(labels), "confidence": round(c, 6)} for c in confidences],
    }
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": data,
                    "encoding": encoding,
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps(answer),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {
                "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
                "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            },
            "eventVersion": "0",
        },
        separators=(",", ":"),
    )


def gaussian_rows(
    count: int, means: Sequence[float], rng: random.Random, std: float = 1.0
) -> list[list[float]]:
    return [[rng.gauss(m, std) for m in means] for _ in range(count)]


def write_capture(
    s3: Any,
    destination: str,
    endpoint: str,
    variant: str,
    rows: Sequence[Sequence[float]],
    *,
    confidences: Sequence[float],
    start: datetime,
    per_request: int = 4,
    per_file: int = 25,
    seed: int = 0,
) -> list[str]:
    """Captured requests from ``start``, a minute apart, in hourly folders; returns the keys written."""
    location = S3Uri.parse(destination)
    bucket, prefix = location.bucket, location.key
    rng = random.Random(seed)
    files: dict[str, list[str]] = {}
    for number, first in enumerate(range(0, len(rows), per_request)):
        when = start + timedelta(minutes=number)
        line = capture_line(
            rows[first : first + per_request],
            confidences[first : first + per_request],
            when,
            encoding="BASE64" if number % 5 == 4 else "JSON",
            rng=rng,
        )
        file_number = number // per_file
        file_start = start + timedelta(minutes=file_number * per_file)
        folder = f"{prefix}/{endpoint}/{variant}/{file_start:%Y/%m/%d/%H}"
        file_id = uuid.UUID(int=random.Random(seed * 100_003 + file_number).getrandbits(128))
        key = f"{folder}/{file_start:%M-%S}-{file_start.microsecond // 1000:03d}-{file_id}.jsonl"
        files.setdefault(key, []).append(line)
    for key, lines in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    return sorted(files)
