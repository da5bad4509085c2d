"""The declared schema of a team's own data, as the generic preparer's arguments give it.

``--format csv|parquet|jsonl|images`` and, for tabular data, ``--target COLUMN [--features a,b |
all] [--problem classification|regression] [--categorical a,b]``; for JSON lines ``--text-field``
and ``--label-field``. Each value must fit in 256 characters (SageMaker's limit per container
argument): leave a long feature list as ``all`` and drop unwanted columns from the data. A
mistake in the declaration, or data that cannot fit it, is a ``SchemaError``: one line naming the
key or column and what is allowed (the CLI exits 2).
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "classification"
REGRESSION = "regression"
PROBLEMS = (CLASSIFICATION, REGRESSION)
TABULAR_FORMATS = ("csv", "parquet")
FORMATS = (*TABULAR_FORMATS, "jsonl", "images")
ALL_FEATURES = "all"


class SchemaError(ValueError):
    """The data or its declaration does not fit: a one-line message for the user, never a traceback."""


@dataclass(frozen=True)
class DataSchema:
    """What the data holds and what to predict; checked against the data by each format's reader."""

    format: str
    target: str | None = None  # tabular: the column to predict
    features: tuple[str, ...] | None = None  # tabular: None means every other column
    problem: str = CLASSIFICATION
    categorical: tuple[str, ...] = ()
    text_field: str = "text"  # jsonl
    label_field: str = "label"  # jsonl

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SchemaError(f"--format {self.format!r} is not supported; use one of {', '.join(FORMATS)}")
        if self.problem not in PROBLEMS:
            raise SchemaError(
                f"--problem {self.problem!r} is not supported; use one of {', '.join(PROBLEMS)}"
            )
        if self.is_tabular:
            self._check_tabular()
        else:
            self._check_not_tabular()

    @property
    def is_tabular(self) -> bool:
        return self.format in TABULAR_FORMATS

    def _check_tabular(self) -> None:
        if not self.target:
            raise SchemaError(f"--format {self.format} needs --target COLUMN: the column to predict")
        if self.features is not None and self.target in self.features:
            raise SchemaError(
                f"--target {self.target!r} is also listed in --features; a feature cannot be the target"
            )
        if self.target in self.categorical:
            raise SchemaError(
                f"--target {self.target!r} is listed in --categorical; --categorical names features only "
                "(classification targets are kept as their class names)"
            )

    def _check_not_tabular(self) -> None:
        if self.problem != CLASSIFICATION:
            raise SchemaError(
                f"--problem {self.problem} needs tabular data (csv, parquet); "
                f"{self.format} labels are classes"
            )
        tabular_only = {
            "--target": self.target,
            "--features": self.features,
            "--categorical": self.categorical,
        }
        for flag, value in tabular_only.items():
            if value:
                raise SchemaError(
                    f"{flag} applies to tabular data (csv, parquet), not --format {self.format}"
                )


def column_list(value: str, flag: str) -> tuple[str, ...]:
    """``a,b,c`` as column names (spaces around names ignored); empty or repeated names are refused."""
    names = tuple(name.strip() for name in value.split(","))
    if not value.strip() or any(not name for name in names):
        raise SchemaError(f"{flag} {value!r} has an empty column name; give names separated by commas")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SchemaError(f"{flag} names {', '.join(map(repr, repeated))} more than once")
    return names


def feature_list(value: str) -> tuple[str, ...] | None:
    """``--features``: ``all`` (every column but the target) or a column list."""
    return None if value.strip() == ALL_FEATURES else column_list(value, "--features")
