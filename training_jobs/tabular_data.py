"""Tabular data (CSV or Parquet) with a declared schema -> CSV splits any CSV reader can load.

Input: every ``*.csv`` (a header row, then one row per record) or ``*.parquet`` file under the
input folder. Each file holds the target column and the feature columns, in any order; other
columns are ignored. A malformed row (wrong field count, missing value, a value that is not a
number in a numeric column) is quarantined with its reason; a declaration the data cannot fit
(an unknown column, a numeric column that holds text) is a ``SchemaError``.

Output, ``train/data.csv``, ``validation/data.csv`` and ``test/data.csv``: UTF-8 CSV, comma
separated, ``\\n`` line ends, one header row naming the feature columns (declared order, or the
data's order under ``--features all``) and then the target column. Numeric features are plain
numbers; a categorical feature is written as its integer code, the index of its value in the
column's sorted vocabulary (``columns.categories`` in manifest.json, ``categories`` in
input-schema.json, where the API maps a request's category string to the same code). The target is
the class name as the data spells it (classification) or a number (regression).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .baselines import compute_baseline
from .cleaning import Example, RawRow, WrittenSplits
from .data_schema import CLASSIFICATION, REGRESSION, DataSchema, SchemaError
from .tasks import MalformedRecord, number_text

DATA_FILE = "data.csv"
# A numeric column is declared wrongly, rather than holding a few bad rows, when more than this
# share of its non-empty values is not a number.
NOT_NUMERIC_SHARE = 0.5
NAMES_SHOWN = 20


@dataclass(frozen=True)
class Cells:
    """One data row by column name, or why it is not one (a reason and a detail)."""

    values: Mapping[str, Any]
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class Table:
    path: Path
    columns: tuple[str, ...]
    rows: list[RawRow]  # each row's data is its Cells


@dataclass(frozen=True)
class TabularColumns:
    """The declared schema resolved against the data's columns."""

    features: tuple[str, ...]
    categorical: frozenset[str]
    target: str
    problem: str

    @property
    def header(self) -> tuple[str, ...]:
        return (*self.features, self.target)


class TabularData:
    """Reads, checks, parses and writes one tabular dataset (see the module docstring)."""

    def __init__(self, schema: DataSchema, input_dir: Path) -> None:
        self.schema = schema
        self.tables = read_tables(schema.format, input_dir)
        self.columns = resolve_columns(schema, self.tables)
        check_numeric_columns(self.columns, self.tables, schema.categorical)

    def rows(self) -> Iterator[RawRow]:
        for table in self.tables:
            yield from table.rows

    def parse(self, cells: Cells) -> Example:
        """One row's features and target, or ``MalformedRecord`` naming the column at fault."""
        if cells.problem is not None:
            raise MalformedRecord(*cells.problem)
        columns = self.columns
        features = tuple(_feature(name, cells.values.get(name), columns) for name in columns.features)
        target = _target(columns, cells.values.get(columns.target))
        # The key is the features only: identical inputs with different labels are one record.
        key = json.dumps([_canonical(v) for v in features], ensure_ascii=False, separators=(",", ":"))
        label = str(target) if columns.problem == CLASSIFICATION else None
        return Example(key, (features, target), label)

    def write(self, splits: Mapping[str, list[Example]], output_dir: Path) -> WrittenSplits:
        """The split files, the input schema (with each categorical column's vocabulary) and the
        baseline of the train split's encoded features."""
        vocabulary = categories(self.columns, [e for examples in splits.values() for e in examples])
        codes = {
            name: {value: code for code, value in enumerate(values)} for name, values in vocabulary.items()
        }
        files = {}
        for name, examples in splits.items():
            relative = f"{name}/{DATA_FILE}"
            write_csv(output_dir / relative, self.columns.header, (self._encoded(e, codes) for e in examples))
            files[relative] = len(examples)
        train_rows = [[float(v) for v in self._encoded(e, codes)[:-1]] for e in splits["train"]]
        return WrittenSplits(
            files=files,
            input_schema=self._input_schema(vocabulary),
            baseline=compute_baseline(train_rows, feature_names=list(self.columns.features)),
            description=self._description(vocabulary),
        )

    def _encoded(self, example: Example, codes: Mapping[str, Mapping[str, int]]) -> list[str]:
        """The row as written: numbers, category codes, then the target."""
        features, target = example.value
        cells = [
            str(codes[name][value]) if name in codes else number_text(value)
            for name, value in zip(self.columns.features, features, strict=True)
        ]
        return [*cells, target if isinstance(target, str) else number_text(target)]

    def _input_schema(self, vocabulary: Mapping[str, list[str]]) -> dict[str, Any]:
        document: dict[str, Any] = {"kind": "tabular", "feature_names": list(self.columns.features)}
        if vocabulary:
            document["categories"] = dict(vocabulary)
        return document

    def _description(self, vocabulary: Mapping[str, list[str]]) -> dict[str, Any]:
        return {
            "features": list(self.columns.features),
            "target": self.columns.target,
            "problem": self.columns.problem,
            "categories": dict(vocabulary),
        }


def read_tables(data_format: str, input_dir: Path) -> list[Table]:
    """Every ``*.csv`` or ``*.parquet`` file under ``input_dir``, sorted by path."""
    paths = sorted(p for p in input_dir.rglob(f"*.{data_format}") if p.is_file())
    if not paths:
        raise SchemaError(f"no *.{data_format} files under {input_dir}")
    return [read_csv(p) if data_format == "csv" else read_parquet(p) for p in paths]


def read_csv(path: Path) -> Table:
    """A CSV file's header and rows; each row keeps its text as read, for the quarantine."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        consumed: list[str] = []
        reader = csv.reader(_remembered(handle, consumed))
        try:
            columns = _header(path, next(reader, None))
            consumed.clear()
            rows, line = [], reader.line_num + 1
            for fields in reader:
                raw = "".join(consumed).rstrip("\r\n")
                consumed.clear()
                rows.append(RawRow({"file": path.name, "line": line}, raw, _csv_cells(columns, fields)))
                line = reader.line_num + 1
        except csv.Error as exc:
            raise SchemaError(f"{path.name}: line {reader.line_num} is not CSV: {exc}") from None
    if not rows:
        raise SchemaError(f"{path.name} has a header but no data rows")
    return Table(path, columns, rows)


def read_parquet(path: Path) -> Table:
    """A Parquet file's columns and rows (values as Parquet types them)."""
    if path.stat().st_size == 0:
        raise SchemaError(f"{path.name} is empty")
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 - only Parquet input needs pyarrow
        from pyarrow import ArrowException  # noqa: PLC0415
    except ImportError:
        raise SchemaError("--format parquet needs pyarrow in the processing image") from None
    try:
        table = pq.read_table(path)
    except (ArrowException, OSError) as exc:
        raise SchemaError(f"{path.name} is not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    columns = _unique_columns(path, [str(name) for name in table.column_names])
    if table.num_rows == 0:
        raise SchemaError(f"{path.name} holds no rows")
    rows = [
        RawRow(
            {"file": path.name, "row": index},
            json.dumps(values, default=str, ensure_ascii=False),
            Cells(values),
        )
        for index, values in enumerate(table.to_pylist(), start=1)
    ]
    return Table(path, columns, rows)


def resolve_columns(schema: DataSchema, tables: Sequence[Table]) -> TabularColumns:
    """The features and target the declaration names, each checked to be a column of every file."""
    first = tables[0]
    available = first.columns
    target = str(schema.target)
    if target not in available:
        raise SchemaError(
            f"--target {target!r} is not a column of {first.path.name}; its columns: {_names(available)}"
        )
    features = schema.features if schema.features is not None else tuple(c for c in available if c != target)
    unknown = [name for name in features if name not in available]
    if unknown:
        raise SchemaError(
            f"--features names {_names(unknown)}, not columns of {first.path.name}; "
            f"its columns: {_names(available)}"
        )
    if not features:
        raise SchemaError(
            f"{first.path.name} has no column besides the target {target!r}: nothing to learn from"
        )
    stray = [name for name in schema.categorical if name not in features]
    if stray:
        raise SchemaError(
            f"--categorical names {_names(stray)}, not features; the features: {_names(features)}"
        )
    columns = TabularColumns(features, frozenset(schema.categorical), target, schema.problem)
    for table in tables[1:]:
        missing = [name for name in columns.header if name not in table.columns]
        if missing:
            raise SchemaError(
                f"{table.path.name} lacks column(s) {_names(missing)} that {first.path.name} has"
            )
    return columns


def check_numeric_columns(columns: TabularColumns, tables: Sequence[Table], declared: Sequence[str]) -> None:
    """A numeric feature (or regression target) mostly holding text was declared wrongly."""
    numeric = [name for name in columns.features if name not in columns.categorical]
    if columns.problem == REGRESSION:
        numeric.append(columns.target)
    for name in numeric:
        filled, texts = _values_and_texts(name, tables)
        if not texts or len(texts) <= filled * NOT_NUMERIC_SHARE:
            continue
        example = texts[0]
        if name == columns.target:
            raise SchemaError(
                f"target column {name!r} is not numeric (e.g. {example!r}); a regression target is a number, "
                "or use --problem classification"
            )
        suggestion = ",".join([*declared, name])
        raise SchemaError(
            f"feature column {name!r} is not numeric (e.g. {example!r}); "
            f"if it holds categories, declare it: --categorical {suggestion}"
        )


def categories(columns: TabularColumns, examples: Iterable[Example]) -> dict[str, list[str]]:
    """Each categorical column's sorted vocabulary over every kept row (sorted: input order does not
    change the codes)."""
    index = {name: position for position, name in enumerate(columns.features) if name in columns.categorical}
    seen: dict[str, set[str]] = {name: set() for name in index}
    for example in examples:
        features = example.value[0]
        for name, position in index.items():
            seen[name].add(features[position])
    return {name: sorted(values) for name, values in seen.items()}


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # newline="" and "\n": the same bytes on every platform, so the dataset hash is portable.
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _remembered(handle: TextIO, consumed: list[str]) -> Iterator[str]:
    """The file's lines, each also appended to ``consumed`` (the csv reader hides the raw text)."""
    for line in handle:
        consumed.append(line)
        yield line


def _header(path: Path, header: list[str] | None) -> tuple[str, ...]:
    if header is None or not any(name.strip() for name in header):
        raise SchemaError(f"{path.name} is empty; a CSV file starts with a header row naming its columns")
    return _unique_columns(path, [name.strip() for name in header])


def _unique_columns(path: Path, names: list[str]) -> tuple[str, ...]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SchemaError(f"{path.name} names column(s) {_names(repeated)} more than once")
    return tuple(names)


def _csv_cells(columns: tuple[str, ...], fields: list[str]) -> Cells:
    if not fields or all(not field.strip() for field in fields):
        return Cells({}, ("empty_row", ""))
    if len(fields) != len(columns):
        return Cells({}, ("wrong_field_count", f"{len(fields)} fields, expected {len(columns)}"))
    return Cells(dict(zip(columns, fields, strict=True)))


def _values_and_texts(name: str, tables: Sequence[Table]) -> tuple[int, list[Any]]:
    """How many readable rows fill column ``name``, and its values that are not numbers."""
    filled, texts = 0, []
    for table in tables:
        for row in table.rows:
            value = row.data.values.get(name)
            if not _is_missing(value):
                filled += 1
                if not _is_number(value):
                    texts.append(value)
    return filled, texts


def _feature(name: str, value: Any, columns: TabularColumns) -> float | str:
    if _is_missing(value):
        raise MalformedRecord("missing_value", name)
    return category_text(value) if name in columns.categorical else _finite(name, value)


def _target(columns: TabularColumns, value: Any) -> float | str:
    if _is_missing(value):
        raise MalformedRecord("missing_target", columns.target)
    return category_text(value) if columns.problem == CLASSIFICATION else _finite(columns.target, value)


def category_text(value: Any) -> str:
    """A category or class as text: ``" monthly "`` and ``"monthly"`` are one, so are ``7`` and ``7.0``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Number) and not isinstance(value, complex):
        return number_text(float(value))  # type: ignore[arg-type]
    return str(value).strip()


def _finite(name: str, value: Any) -> float:
    if not _is_number(value):
        raise MalformedRecord("not_a_number", f"{name}={value!r}")
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise MalformedRecord("non_finite", f"{name}={value!r}")
    return number


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return not isinstance(value, complex)
    if isinstance(value, str):
        try:
            float(value.strip())
        except ValueError:
            return False
        return True
    return False


def _canonical(value: float | str) -> str:
    return value if isinstance(value, str) else number_text(value)


def _names(names: Iterable[str]) -> str:
    """Column names for a one-line message (the first few, and how many in all)."""
    listed = list(names)
    shown = ", ".join(repr(name) for name in listed[:NAMES_SHOWN])
    return shown if len(listed) <= NAMES_SHOWN else f"{shown}, ... ({len(listed)} in all)"
