"""Synthetic traffic, captured by the local SageMaker Runtime's own capture code
(``emulator.capture``: the line SageMaker writes per request, the key it writes it under):
``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<time>-<uuid>.jsonl``. Requests whose
content type the endpoint config does not name as JSON are recorded ``BASE64``, as SageMaker does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from emulator.capture import Invocation, capture_key, capture_line
from handlers.common.s3_uri import S3Uri

# Not among the config's JSON content types: captured BASE64, as SageMaker records such a request.
OPAQUE_CONTENT_TYPE = "application/x-json-stream"


def invocation(
    endpoint: str,
    variant: str,
    instances: Sequence[Any],
    confidences: Sequence[float],
    when: datetime,
    *,
    content_type: str = "application/json",
    labels: Sequence[str] = ("low", "high"),
    rng: random.Random | None = None,
) -> Invocation:
    """One request ``{"instances": ...}`` and the inference handler's answer to it."""
    rng = rng or random.Random(0)
    answer = {
        "model": "tabular-mlp",
        "predictions": [{"label": rng.choice(labels), "confidence": round(c, 6)} for c in confidences],
    }
    return Invocation(
        endpoint=endpoint,
        variant=variant,
        input_body=json.dumps({"instances": list(instances)}).encode(),
        input_type=content_type,
        output_body=json.dumps(answer).encode(),
        output_type="application/json",
        at=when,
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
    """Captured requests from ``start``, a minute apart, ``per_file`` to a file (in hourly folders,
    under the keys the capture writer gives them); returns the keys written."""
    location = S3Uri.parse(destination)
    rng = random.Random(seed)
    files: dict[str, list[str]] = {}
    first_of_file = ""
    for number, first in enumerate(range(0, len(rows), per_request)):
        when = start + timedelta(minutes=number)
        request = invocation(
            endpoint,
            variant,
            rows[first : first + per_request],
            confidences[first : first + per_request],
            when,
            content_type=OPAQUE_CONTENT_TYPE if number % 5 == 4 else "application/json",
            rng=rng,
        )
        if number % per_file == 0:
            first_of_file = capture_key(location.key, endpoint, variant, when)
        files.setdefault(first_of_file, []).append(capture_line(request))
    for key, lines in files.items():
        s3.put_object(Bucket=location.bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    return sorted(files)
