"""Raw CSV / JSONL bytes -> clean, transformed lines and rejected records with their reasons.

Every record goes through the same instance model as the API's requests, so batch data and live
traffic obey one contract. The output is canonical (sorted keys, fixed separators) so the same
input always gives the same bytes, and exact duplicates (after cleaning) are kept once.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from handlers.common.input_schema import (
    AnyInputSchema,
    TabularInputSchema,
    field_problems,
    instance_model_for,
)
from handlers.preprocess.errors import SourceObjectError

MAX_RECORD_ECHO = 1000  # characters of a rejected record kept beside its reason


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str
    record: str


@dataclass
class CleanBatch:
    lines: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0

    def output_bytes(self) -> bytes:
        return "".join(f"{line}\n" for line in self.lines).encode()

    def quarantine_bytes(self) -> bytes:
        return "".join(
            json.dumps({"line": r.line, "reason": r.reason, "record": r.record}, sort_keys=True) + "\n"
            for r in self.rejected
        ).encode()


def record_format(key: str) -> str:
    lowered = key.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise SourceObjectError(f"{key!r} is neither .csv nor .jsonl")


def clean(data: bytes, data_format: str, schema: AnyInputSchema) -> CleanBatch:
    """Validate, clean and transform every record of one raw object."""
    batch = CleanBatch()
    seen: set[str] = set()
    model = instance_model_for(schema)
    reader = _csv_records(data, schema) if data_format == "csv" else _jsonl_records(data)
    for line, record, raw in reader:
        if isinstance(record, Rejected):
            batch.rejected.append(record)
            continue
        label = record.pop(schema.label_field, None) if isinstance(record, dict) else None
        try:
            instance = model.model_validate(record)
        except ValidationError as exc:
            reason = "; ".join(f"{p.field}: {p.problem}" for p in field_problems(exc, root="record"))
            batch.rejected.append(Rejected(line, reason, raw[:MAX_RECORD_ECHO]))
            continue
        output: dict[str, Any] = {"instance": schema.to_endpoint(instance)}
        if label is not None:
            output["label"] = label
        canonical = json.dumps(output, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if canonical in seen:
            batch.duplicates += 1
            continue
        seen.add(canonical)
        batch.lines.append(canonical)
    return batch


RawRecord = tuple[int, Any, str]  # (line number, parsed record or Rejected, raw text)


def _jsonl_records(data: bytes) -> Iterator[RawRecord]:
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            echo = raw_line.decode("utf-8", errors="replace")[:MAX_RECORD_ECHO]
            yield number, Rejected(number, "not valid UTF-8", echo), echo
            continue
        try:
            record = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            reason = f"not valid JSON: {str(exc).splitlines()[0][:200]}"
            yield number, Rejected(number, reason, text[:MAX_RECORD_ECHO]), text
            continue
        yield number, record, text


def _csv_records(data: bytes, schema: AnyInputSchema) -> Iterator[RawRecord]:
    # surrogateescape keeps undecodable bytes visible per row, so one bad row is quarantined
    # instead of failing the whole file.
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    columns = [name.strip() for name in header]
    if any(_has_surrogates(name) for name in columns) or len(set(columns)) != len(columns):
        raise SourceObjectError("the CSV header is not valid UTF-8 or repeats a column")
    line_end = reader.line_num
    while True:
        number = line_end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            line_end = reader.line_num
            yield number, Rejected(number, f"not valid CSV: {exc}", ""), ""
            continue
        line_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        raw = ",".join(row).encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        if any(_has_surrogates(cell) for cell in row):
            yield number, Rejected(number, "not valid UTF-8", raw[:MAX_RECORD_ECHO]), raw
        elif len(row) != len(columns):
            reason = f"has {len(row)} fields; the header has {len(columns)}"
            yield number, Rejected(number, reason, raw[:MAX_RECORD_ECHO]), raw
        else:
            record: dict[str, Any] = dict(zip(columns, row, strict=True))
            if isinstance(schema, TabularInputSchema):
                record = schema.coerce_csv_cells(record)
            yield number, record, raw


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number")
