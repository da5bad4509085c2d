"""raw -> processed: drop malformed rows (counted by reason), dedupe, split 70/20/10, write a manifest.

Runs as a SageMaker Processing job (``python -m training_jobs.prepare --task digits``: reads
``/opt/ml/processing/input``, writes ``/opt/ml/processing/output``; ``MLP_PROCESSING_ROOT``
moves that root, arguments override both) and as a function (``prepare(...)``).

The output has one folder per split (``train/``, ``validation/``, ``test/``: the training
channels), ``quarantine/rejected.jsonl`` (every dropped row with its reason) and
``manifest.json``. The manifest holds a sha256 per split file; the hash over those is the
dataset version, so the same input always gives the same version and any change a new one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tasks import MalformedRecord, Record, TaskSpec, data_lines, get_task, write_records

PROCESSING_ROOT_ENV = "MLP_PROCESSING_ROOT"
DEFAULT_PROCESSING_ROOT = "/opt/ml/processing"
MANIFEST_FILE = "manifest.json"
QUARANTINE_FILE = "quarantine/rejected.jsonl"
SPLITS: tuple[tuple[str, float], ...] = (("train", 0.7), ("validation", 0.2), ("test", 0.1))
DUPLICATE = "duplicate"


@dataclass
class CleanResult:
    records: list[Record] = field(default_factory=list)
    rows_read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def clean(task: TaskSpec, files: Sequence[Path]) -> CleanResult:
    """Parse every data line; keep the first copy of each input, count the rest by reason."""
    result = CleanResult()
    seen: set[str] = set()
    first_line = 2 if task.data_format == "csv" else 1  # line numbers as an editor shows them
    for path in files:
        for line_number, line in enumerate(data_lines(task, path), start=first_line):
            result.rows_read += 1
            try:
                record = task.parse(line)
                key = task.dedupe_key(record)
                if key in seen:
                    raise MalformedRecord(DUPLICATE)
            except MalformedRecord as exc:
                result.dropped[exc.reason] += 1
                where = {"file": path.name, "line": line_number}
                result.rejected.append({**where, "reason": str(exc), "raw": line})
                continue
            seen.add(key)
            result.records.append(record)
    return result


def split(records: Sequence[Record], seed: int) -> dict[str, list[Record]]:
    """Seeded shuffle, then 70/20/10 (rounded; the test split takes the remainder)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    shuffled = [records[i] for i in order]
    splits: dict[str, list[Record]] = {}
    start = 0
    for index, (name, fraction) in enumerate(SPLITS):
        end = len(shuffled) if index == len(SPLITS) - 1 else start + round(fraction * len(shuffled))
        splits[name] = shuffled[start:end]
        start = end
    return splits


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_version(file_hashes: dict[str, str]) -> str:
    """One hash over (relative path, content hash) pairs, in a fixed order."""
    lines = "".join(f"{name} {file_hashes[name]}\n" for name in sorted(file_hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def input_files(task: TaskSpec, input_dir: Path) -> list[Path]:
    files = sorted(input_dir.rglob(f"*.{task.data_format}"))
    if not files:
        raise FileNotFoundError(f"no *.{task.data_format} files under {input_dir}")
    return files


def prepare(task_name: str, input_dir: Path, output_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Clean, split and write the dataset of ``task_name``; returns the manifest it wrote.

    Parameters: ``input_dir`` holds the raw files (searched recursively, sorted by path);
    ``output_dir`` receives the splits, the quarantine file and ``manifest.json``.
    """
    task = get_task(task_name)
    cleaned = clean(task, input_files(task, input_dir))
    files: dict[str, dict[str, Any]] = {}
    for name, records in split(cleaned.records, seed).items():
        relative = f"{name}/{task.file_name}"
        write_records(task, records, output_dir / relative)
        files[relative] = {"sha256": sha256_file(output_dir / relative), "rows": len(records)}
    _write_quarantine(output_dir / QUARANTINE_FILE, cleaned.rejected)
    manifest = {
        "task": task.name,
        "seed": seed,
        "split_fractions": dict(SPLITS),
        "files": files,
        "rows": {
            "read": cleaned.rows_read,
            "kept": len(cleaned.records),
            "dropped": dict(sorted(cleaned.dropped.items())),
        },
        "dataset_version": dataset_version({name: entry["sha256"] for name, entry in files.items()}),
    }
    (output_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _write_quarantine(path: Path, rejected: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rejected))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    root = Path(os.environ.get(PROCESSING_ROOT_ENV, DEFAULT_PROCESSING_ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--task", required=True, help="digits, diabetes or spam")
    parser.add_argument("--input-dir", type=Path, default=root / "input")
    parser.add_argument("--output-dir", type=Path, default=root / "output")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    manifest = prepare(args.task, args.input_dir, args.output_dir, seed=args.seed)
    print(json.dumps({"dataset_version": manifest["dataset_version"], "rows": manifest["rows"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
