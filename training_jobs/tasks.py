"""The platform's tasks: which data format, which model, which hyperparameter defaults.

A task ties a raw data layout (CSV of numbers, or JSON lines of text) to a registered model.
Parsing here is strict and names a reason for every rejected row, so ``prepare`` can count
them and training can trust the processed splits.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data_schema import CLASSIFICATION, REGRESSION, SchemaError

DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


class MalformedRecord(ValueError):
    """One raw row is unusable; ``reason`` is a short, countable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Record:
    """One example: numeric features or a text, and the target (class index or value)."""

    features: tuple[float, ...] | str
    target: int | float


@dataclass(frozen=True)
class TaskSpec:
    name: str
    model_name: str
    kind: str
    data_format: str  # "csv" or "jsonl"
    target_name: str
    feature_names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    # Hyperparameter defaults that suit this task; explicit hyperparameters override them.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # The held-out quality the tests and the benchmark hold this task to.
    quality_metric: str = "accuracy"
    quality_threshold: float = 0.9

    @property
    def file_name(self) -> str:
        return f"data.{self.data_format}"

    @property
    def raw_file_name(self) -> str:
        return f"{self.name}.{self.data_format}"

    def header(self) -> list[str]:
        return [*self.feature_names, self.target_name]

    def parse(self, line: str) -> Record:
        """Parse one data line (CSV without header, or one JSON object)."""
        return _parse_jsonl(self, line) if self.data_format == "jsonl" else _parse_csv(self, line)

    def serialise(self, record: Record) -> str:
        """The canonical line for ``record``: equal records give equal bytes (hashes, dedupe)."""
        if self.data_format == "jsonl":
            return json.dumps({"text": record.features, self.target_name: self.labels[int(record.target)]})
        assert isinstance(record.features, tuple)
        target = self.labels[int(record.target)] if self.labels else number_text(float(record.target))
        return ",".join([*(number_text(v) for v in record.features), target])

    def dedupe_key(self, record: Record) -> str:
        """Identical inputs count once, whatever their label: a contradicting copy is noise, and
        a copy in both train and test would leak."""
        if isinstance(record.features, str):
            return " ".join(record.features.lower().split())
        return ",".join(number_text(v) for v in record.features)


TASKS: dict[str, TaskSpec] = {
    "digits": TaskSpec(
        name="digits",
        model_name="digits-cnn",
        kind=CLASSIFICATION,
        data_format="csv",
        target_name="label",
        feature_names=tuple(f"pixel_{i}" for i in range(64)),
        labels=tuple(str(d) for d in range(10)),
        defaults={"epochs": 12, "batch_size": 64, "learning_rate": 3e-3},
        quality_metric="accuracy",
        quality_threshold=0.90,
    ),
    "diabetes": TaskSpec(
        name="diabetes",
        model_name="tabular-mlp",
        kind=REGRESSION,
        data_format="csv",
        target_name="target",
        feature_names=DIABETES_FEATURES,
        defaults={"epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "weight_decay": 1e-2},
        quality_metric="r2",
        quality_threshold=0.35,
    ),
    "spam": TaskSpec(
        name="spam",
        model_name="text-bow",
        kind=CLASSIFICATION,
        data_format="jsonl",
        target_name="label",
        labels=("ham", "spam"),
        defaults={"epochs": 5, "batch_size": 32, "learning_rate": 1e-2},
        quality_metric="accuracy",
        quality_threshold=0.90,
    ),
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


def data_lines(task: TaskSpec, path: Path) -> Iterator[str]:
    """The data lines of a file (the CSV header checked and skipped), newline stripped."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        if task.data_format == "csv":
            header = next(csv.reader([handle.readline()]), [])
            if [h.strip() for h in header] != task.header():
                raise SchemaError(
                    f"{path.name}: header does not match task {task.name!r}; "
                    f"expected {','.join(task.header())}"
                )
        for line in handle:
            yield line.rstrip("\r\n")


def read_records(task: TaskSpec, path: Path) -> list[Record]:
    """All records of a processed file; any bad line is an error (processed data is clean)."""
    return [task.parse(line) for line in data_lines(task, path) if line]


def write_records(task: TaskSpec, records: list[Record], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(task.header())] if task.data_format == "csv" else []
    lines += [task.serialise(r) for r in records]
    # newline="" keeps "\n" on every platform, so the bytes (and the dataset hash) are portable.
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def number_text(value: float) -> str:
    """The canonical text of a number: equal values give equal text (``28.0`` and ``28`` too)."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _parse_csv(task: TaskSpec, line: str) -> Record:
    fields = next(csv.reader(io.StringIO(line)), [])
    if not fields or all(not f.strip() for f in fields):
        raise MalformedRecord("empty_row")
    if len(fields) != len(task.header()):
        raise MalformedRecord("wrong_field_count", f"{len(fields)} fields, expected {len(task.header())}")
    *raw_features, raw_target = (f.strip() for f in fields)
    features = tuple(_finite(v) for v in raw_features)
    return Record(features, _label_index(task, raw_target) if task.labels else _finite(raw_target))


def json_object(line: str) -> dict[str, Any]:
    """One JSON-lines row as an object; a malformed one is a :class:`MalformedRecord` with its reason."""
    if not line.strip():
        raise MalformedRecord("empty_row")
    try:
        document = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MalformedRecord("invalid_json", str(exc)) from None
    if not isinstance(document, dict):
        raise MalformedRecord("not_an_object")
    return document


def _parse_jsonl(task: TaskSpec, line: str) -> Record:
    document = json_object(line)
    if "text" not in document or task.target_name not in document:
        raise MalformedRecord("missing_field")
    text, label = document["text"], document[task.target_name]
    if not isinstance(text, str) or not isinstance(label, str):
        raise MalformedRecord("wrong_type")
    if not text.strip():
        raise MalformedRecord("empty_text")
    return Record(text, _label_index(task, label))


def _finite(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise MalformedRecord("not_a_number", repr(raw)) from None
    if not math.isfinite(value):
        raise MalformedRecord("non_finite", repr(raw))
    return value


def _label_index(task: TaskSpec, raw: str) -> int:
    if raw not in task.labels:
        raise MalformedRecord("unknown_label", repr(raw))
    return task.labels.index(raw)
