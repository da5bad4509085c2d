"""raw -> processed: quarantine malformed rows (counted by reason), dedupe, split by content hash.

Runs as a SageMaker Processing job and as functions. A built-in task::

    python -m training_jobs.prepare --task digits|diabetes|spam

or a team's own data, declared by its schema (``training_jobs/data_schema.py``)::

    python -m training_jobs.prepare --format csv|parquet --target COLUMN [--features a,b | all]
        [--problem classification|regression] [--categorical a,b]
    python -m training_jobs.prepare --format jsonl [--text-field text] [--label-field label]
    python -m training_jobs.prepare --format images

Both read ``/opt/ml/processing/input`` and write ``/opt/ml/processing/output``
(``MLP_PROCESSING_ROOT`` moves that root; ``--input-dir`` and ``--output-dir`` override both).

The output has one folder per split (``train/``, ``validation/``, ``test/``: the training
channels), ``quarantine/rejected.jsonl`` (every dropped row with its reason) and
``manifest.json``. A record's split is a stable function of its content (``splitting.py``), so it
keeps its split in every dataset version. The manifest holds a sha256 per split file; the hash
over those is the dataset version, so the same records always give the same version and any
change a new one. A team's data also gets ``input-schema.json`` (what the prediction API checks
requests against) and ``baseline.json`` (the train split's feature statistics, for the drift
monitor) at the output root; the split files' formats are in ``tabular_data.py``,
``text_data.py`` and ``image_data.py``. A schema the data does not fit exits 2 with one line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .baselines import BASELINE_FILE
from .cleaning import (
    Cleaned,
    Example,
    RawRow,
    WrittenSplits,
    check_splits_filled,
    class_counts,
    clean,
    write_quarantine,
)
from .data_schema import PROBLEMS, DataSchema, SchemaError, column_list, feature_list
from .dataset_layout import (
    DEFAULT_PROCESSING_ROOT,
    INPUT_SCHEMA_FILE,
    MANIFEST_FILE,
    PROCESSING_ROOT_ENV,
    QUARANTINE_FILE,
)
from .image_data import ImageData
from .splitting import assign_splits, split_fractions, split_method
from .tabular_data import TabularData
from .tasks import TASKS, TaskSpec, data_lines, get_task, write_records
from .text_data import TextData

SCHEMA_ERROR_EXIT = 2


class DataFormat(Protocol):
    """A team's data format: reads its rows, parses one, writes the splits."""

    def rows(self) -> Iterator[RawRow]: ...

    def parse(self, data: Any) -> Example: ...

    def write(self, splits: Mapping[str, list[Example]], output_dir: Path) -> WrittenSplits: ...


def prepare(task_name: str, input_dir: Path, output_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Clean, split and write the dataset of the built-in task ``task_name``; returns the manifest.

    Parameters: ``input_dir`` holds the raw files (searched recursively, sorted by path);
    ``output_dir`` receives the splits, the quarantine file and ``manifest.json``; ``seed`` other
    than 0 salts the split hash (a deliberate re-split of every record).
    """
    task = get_task(task_name)
    cleaned = clean(_task_rows(task, input_files(task, input_dir)), lambda line: _task_example(task, line))
    files = {}
    for name, examples in assign_splits(cleaned.examples, _key, seed).items():
        relative = f"{name}/{task.file_name}"
        write_records(task, [e.value for e in examples], output_dir / relative)
        files[relative] = len(examples)
    return _finish(output_dir, cleaned, files, {"task": task.name}, seed)


def prepare_dataset(
    schema: DataSchema, input_dir: Path, output_dir: Path, *, seed: int = 0
) -> dict[str, Any]:
    """Clean, split and write a team's dataset declared by ``schema``; returns the manifest.

    Raises ``SchemaError`` (one line) when the data cannot fit the schema; malformed single rows
    are quarantined instead. Besides the splits, writes ``input-schema.json`` and ``baseline.json``.
    """
    data = _data_format(schema, input_dir)
    cleaned = clean(data.rows(), data.parse)
    # Written first: when no row is usable, the quarantine says why.
    write_quarantine(output_dir / QUARANTINE_FILE, cleaned.rejected)
    if not cleaned.examples:
        raise SchemaError(
            f"none of the {cleaned.rows_read} rows is usable (dropped: {dict(cleaned.dropped)}); "
            f"{QUARANTINE_FILE} in the output gives each row's reason"
        )
    splits = assign_splits(cleaned.examples, _key, seed)
    check_splits_filled(splits)
    written = data.write(splits, output_dir)
    _write_json(output_dir / INPUT_SCHEMA_FILE, written.input_schema)
    if written.baseline is not None:
        _write_json(output_dir / BASELINE_FILE, written.baseline)
    details = {
        "format": schema.format,
        "problem": schema.problem,
        "columns": written.description,
        "classes": class_counts(splits),
        "input_schema": INPUT_SCHEMA_FILE,
        "baseline": BASELINE_FILE if written.baseline is not None else None,
    }
    return _finish(output_dir, cleaned, written.files, details, seed)


def input_files(task: TaskSpec, input_dir: Path) -> list[Path]:
    files = sorted(input_dir.rglob(f"*.{task.data_format}"))
    if not files:
        raise FileNotFoundError(f"no *.{task.data_format} files under {input_dir}")
    return files


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


def _data_format(schema: DataSchema, input_dir: Path) -> DataFormat:
    if schema.is_tabular:
        return TabularData(schema, input_dir)
    if schema.format == "jsonl":
        return TextData(schema, input_dir)
    return ImageData(input_dir)


def _task_rows(task: TaskSpec, files: Sequence[Path]) -> Iterator[RawRow]:
    first_line = 2 if task.data_format == "csv" else 1  # line numbers as an editor shows them
    for path in files:
        for number, line in enumerate(data_lines(task, path), start=first_line):
            yield RawRow({"file": path.name, "line": number}, line, line)


def _task_example(task: TaskSpec, line: str) -> Example:
    record = task.parse(line)
    return Example(task.dedupe_key(record), record)


def _key(example: Example) -> str:
    return example.key


def _finish(
    output_dir: Path, cleaned: Cleaned, rows_by_file: dict[str, int], details: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Write the quarantine and the manifest (split files hashed) and return the manifest."""
    write_quarantine(output_dir / QUARANTINE_FILE, cleaned.rejected)
    files: dict[str, dict[str, Any]] = {
        name: {"sha256": sha256_file(output_dir / name), "rows": rows} for name, rows in rows_by_file.items()
    }
    manifest = {
        **details,
        "seed": seed,
        "split": split_method(seed),
        "split_fractions": split_fractions(),
        "files": files,
        "rows": cleaned.row_counts(),
        "dataset_version": dataset_version({name: entry["sha256"] for name, entry in files.items()}),
    }
    _write_json(output_dir / MANIFEST_FILE, manifest)
    return manifest


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    root = Path(os.environ.get(PROCESSING_ROOT_ENV, DEFAULT_PROCESSING_ROOT))
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Give --task for a built-in example, or --format and the data's schema for a team's own data.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--task", choices=sorted(TASKS), help="a built-in example task")
    source.add_argument(
        "--format", choices=["csv", "parquet", "jsonl", "images"], help="a team's data format"
    )
    parser.add_argument("--target", help="csv/parquet: the column to predict")
    parser.add_argument(
        "--features",
        default="all",
        help="csv/parquet: feature columns, comma separated (default all: every other column)",
    )
    parser.add_argument(
        "--problem", choices=PROBLEMS, default="classification", help="csv/parquet: what the target is"
    )
    parser.add_argument(
        "--categorical", default="", help="csv/parquet: feature columns holding categories, comma separated"
    )
    parser.add_argument("--text-field", default="text", help="jsonl: the field holding the text")
    parser.add_argument("--label-field", default="label", help="jsonl: the field holding the class label")
    parser.add_argument("--input-dir", type=Path, default=root / "input")
    parser.add_argument("--output-dir", type=Path, default=root / "output")
    parser.add_argument(
        "--seed", type=int, default=0, help="0 keeps every record's split; another value re-splits all"
    )
    return parser.parse_args(argv)


def schema_from_args(args: argparse.Namespace) -> DataSchema:
    """The declared schema of ``--format`` and its companions (``SchemaError`` if inconsistent)."""
    return DataSchema(
        format=args.format,
        target=args.target,
        features=feature_list(args.features),
        problem=args.problem,
        categorical=column_list(args.categorical, "--categorical") if args.categorical.strip() else (),
        text_field=args.text_field,
        label_field=args.label_field,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.task:
            manifest = prepare(args.task, args.input_dir, args.output_dir, seed=args.seed)
        else:
            manifest = prepare_dataset(
                schema_from_args(args), args.input_dir, args.output_dir, seed=args.seed
            )
    except (SchemaError, FileNotFoundError) as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return SCHEMA_ERROR_EXIT
    print(json.dumps({"dataset_version": manifest["dataset_version"], "rows": manifest["rows"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
