"""Rows in, kept examples out: each malformed or repeated row is dropped and kept with its reason.

Every data format (the built-in tasks, tabular, text, images) reads its files into ``RawRow``\\ s
and parses each into an ``Example``; ``clean`` keeps the first copy of each canonical key,
counts every dropped row by reason and records it for ``quarantine/rejected.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data_schema import SchemaError
from .splitting import SPLIT_NAMES
from .tasks import MalformedRecord

DUPLICATE = "duplicate"
# With this many rows a class lands in each of the three splits with over 99% probability.
ROWS_PER_CLASS_ADVISED = 50


@dataclass(frozen=True)
class RawRow:
    """One row as read: where it is (file, line or row), its text for the quarantine, its data."""

    where: dict[str, Any]
    raw: str
    data: Any


@dataclass(frozen=True)
class Example:
    """One kept record: ``key`` is its canonical content (dedupe and split), ``label`` its class."""

    key: str
    value: Any
    label: str | None = None


@dataclass
class Cleaned:
    examples: list[Example] = field(default_factory=list)
    rows_read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def row_counts(self) -> dict[str, Any]:
        return {
            "read": self.rows_read,
            "kept": len(self.examples),
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass(frozen=True)
class WrittenSplits:
    """What a data format wrote: split files (relative path -> rows), and what the API and the
    drift monitor need (the input schema document, the baseline document or ``None``)."""

    files: dict[str, int]
    input_schema: dict[str, Any]
    baseline: dict[str, Any] | None
    description: dict[str, Any]  # the columns, classes or image shape, for manifest.json


def clean(rows: Iterable[RawRow], parse: Callable[[Any], Example]) -> Cleaned:
    """Parse every row; keep the first copy of each key, count the rest by reason."""
    result = Cleaned()
    seen: set[str] = set()
    for row in rows:
        result.rows_read += 1
        try:
            example = parse(row.data)
            if example.key in seen:
                raise MalformedRecord(DUPLICATE)
        except MalformedRecord as exc:
            result.dropped[exc.reason] += 1
            result.rejected.append({**row.where, "reason": str(exc), "raw": row.raw})
            continue
        seen.add(example.key)
        result.examples.append(example)
    return result


def write_quarantine(path: Path, rejected: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rejected))


def check_splits_filled(splits: dict[str, list[Example]]) -> None:
    """Each split must hold a row, and a classifier's every class a row in each split."""
    empty = [name for name in SPLIT_NAMES if not splits[name]]
    if empty:
        kept = sum(len(examples) for examples in splits.values())
        raise SchemaError(
            f"{kept} rows kept and none in {' or '.join(empty)}; train, validation and test each need rows "
            f"(a row's split comes from a hash of its content): give at least {ROWS_PER_CLASS_ADVISED} rows"
        )
    for label, counts in sorted(class_counts(splits).items()):
        missing = [name for name in SPLIT_NAMES if not counts[name]]
        if missing:
            raise SchemaError(
                f"class {label!r} has {sum(counts.values())} rows and none in {' or '.join(missing)}; every "
                f"class needs rows in train, validation and test: give {label!r} at least "
                f"{ROWS_PER_CLASS_ADVISED} rows"
            )


def class_counts(splits: dict[str, list[Example]]) -> dict[str, dict[str, int]]:
    """Class label -> rows per split (examples without a label are not counted)."""
    counts: dict[str, dict[str, int]] = {}
    for name in SPLIT_NAMES:
        for example in splits[name]:
            if example.label is not None:
                counts.setdefault(example.label, dict.fromkeys(SPLIT_NAMES, 0))[name] += 1
    return counts
