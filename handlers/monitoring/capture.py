"""Reading SageMaker data capture: where the files of a time window are, and what a line holds.

SageMaker writes ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``; each
line is one request::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "...", "encoding": "JSON" | "BASE64" | "CSV"},
                     "endpointOutput": {..., "mode": "OUTPUT", ...}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2024-06-01T12:00:01Z"},
     "eventVersion": "0"}

A line this module cannot read is counted and skipped, never fatal: one bad request must not
hide a week of drift.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

TEXT_FEATURES = ("text_chars", "text_words")  # as training_jobs.baselines derives them
# Keys under which models commonly answer class probabilities: a prediction's confidence is the top one.
PROBABILITY_KEYS = ("probabilities", "probs", "scores")
RowOf = Callable[[Any], list[float] | None]


@dataclass(frozen=True)
class CapturedRequest:
    """One captured invocation: when, its instances, and the confidences its answer carried."""

    at: datetime | None
    instances: list[Any]
    confidences: list[float]


@dataclass
class CapturedWindow:
    """What one variant's capture files hold for a window: inputs as rows, and confidences
    (and, when asked for, the requests themselves: a baseline is built from them)."""

    requests: int = 0
    rows: list[list[float]] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    skipped_lines: int = 0
    skipped_instances: int = 0
    files: int = 0
    kept: list[CapturedRequest] = field(default_factory=list)


def hour_prefixes(base: str, start: datetime, end: datetime) -> list[str]:
    """The ``yyyy/mm/dd/hh/`` folders under ``base`` that can hold captures from [start, end)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = end.astimezone(UTC)
    prefixes = []
    while hour < last:
        prefixes.append(f"{base}/{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return prefixes


def inference_time(line: dict[str, Any]) -> datetime | None:
    raw = (line.get("eventMetadata") or {}).get("inferenceTime")
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def decoded(part: dict[str, Any]) -> tuple[str, str]:
    """``(media type, text)`` of an ``endpointInput`` / ``endpointOutput`` block."""
    encoding = str(part.get("encoding", "")).upper()
    data = part.get("data")
    if not isinstance(data, str):
        raise ValueError("capture block has no data")
    if encoding == "BASE64":
        data = base64.b64decode(data, validate=True).decode("utf-8")
    elif encoding not in ("JSON", "CSV"):
        raise ValueError(f"unknown capture encoding {encoding!r}")
    media = str(part.get("observedContentType", "")).split(";")[0].strip().lower()
    if encoding == "CSV" and not media:
        media = "text/csv"
    return media, data


def input_instances(media: str, text: str) -> list[Any]:
    """The instances of one request body: ``{"instances": [...]}`` (or ``"inputs"``), a bare list,
    CSV rows, or any other JSON as one instance (a model without an input schema takes any)."""
    if media == "text/csv":
        return [[float(cell) for cell in row] for row in csv.reader(io.StringIO(text)) if row]
    document = json.loads(text)
    if isinstance(document, dict) and ("instances" in document or "inputs" in document):
        document = document.get("instances", document.get("inputs"))
        if not isinstance(document, list):
            raise ValueError("request body holds no list of instances")
    return document if isinstance(document, list) else [document]


def output_confidences(media: str, text: str) -> list[float]:
    """Each prediction's confidence, from ``{"predictions": [{"confidence"}]}``, a top-level
    ``"confidence"`` list, or class probabilities (the top one); regressors' answers give none."""
    if media not in ("application/json", ""):
        return []
    document = json.loads(text)
    if not isinstance(document, dict):
        return []
    if isinstance(document.get("confidence"), list):
        return _finite(document["confidence"])
    for key in PROBABILITY_KEYS:
        if isinstance(document.get(key), list):
            return _finite(_top(row) for row in document[key])
    predictions = document.get("predictions")
    return _finite(_item_confidence(p) for p in (predictions if isinstance(predictions, list) else []))


def _item_confidence(prediction: Any) -> Any:
    if not isinstance(prediction, dict):
        return None
    if "confidence" in prediction:
        return prediction["confidence"]
    return next((_top(prediction[k]) for k in PROBABILITY_KEYS if k in prediction), None)


def _top(probabilities: Any) -> Any:
    if isinstance(probabilities, list) and probabilities and all(_is_number(p) for p in probabilities):
        return max(probabilities)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(values: Any) -> list[float]:
    return [float(v) for v in values if _is_number(v)]


def instance_row(instance: Any, feature_names: Sequence[str]) -> list[float] | None:
    """One instance as the baseline's feature row, or ``None`` if it does not fit the baseline."""
    if tuple(feature_names) == TEXT_FEATURES:
        if not isinstance(instance, str):
            return None
        return [float(len(instance)), float(len(instance.split()))]
    flat = list(_flatten(instance))
    if len(flat) != len(feature_names) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in flat
    ):
        return None
    return [float(v) for v in flat]


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def parse_capture_line(raw: str) -> CapturedRequest:
    """One capture line; ValueError, KeyError, TypeError... when it cannot be read."""
    line = json.loads(raw)
    capture = line["captureData"]
    media, body = decoded(capture["endpointInput"])
    output = capture.get("endpointOutput")
    confidences = output_confidences(*decoded(output)) if output else []
    return CapturedRequest(inference_time(line), input_instances(media, body), confidences)


def add_capture_lines(
    window: CapturedWindow,
    text: str,
    feature_names: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    row_of: RowOf | None = None,
    keep: bool = False,
) -> None:
    """Fold one capture file's lines inside [start, end) into ``window``; each instance becomes a
    row with ``row_of`` (default: the baseline's features in order); ``keep`` keeps the requests."""
    to_row = row_of or (lambda instance: instance_row(instance, feature_names))
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            request = parse_capture_line(raw)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError):
            window.skipped_lines += 1
            continue
        if request.at is not None and not start <= request.at < end:
            continue
        window.requests += 1
        window.confidences.extend(request.confidences)
        if keep:
            window.kept.append(request)
        for instance in request.instances:
            row = to_row(instance)
            if row is None:
                window.skipped_instances += 1
            else:
                window.rows.append(row)
