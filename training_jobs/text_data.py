"""JSON lines of labelled text -> JSON-lines splits.

Input: every ``*.jsonl`` file under the input folder, one JSON object per line with a text field
(``--text-field``, default ``text``) and a class label field (``--label-field``, default ``label``;
a string or an integer). Other fields are ignored. A line that is not such an object is
quarantined with its reason; an empty file is a ``SchemaError``.

Output, ``train/data.jsonl``, ``validation/data.jsonl`` and ``test/data.jsonl``: UTF-8, one object
per line with the same two field names; the text normalised as the prediction API normalises a
request's text (Unicode NFC, runs of whitespace as one space, trimmed), so the model trains on
what it will be sent; the label as text.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .baselines import compute_baseline
from .cleaning import Example, RawRow, WrittenSplits
from .data_schema import DataSchema, SchemaError
from .tasks import MalformedRecord, json_object

DATA_FILE = "data.jsonl"
# The API's default text limit; longer training texts raise the schema's limit to fit them.
DEFAULT_MAX_CHARS = 10_000
MAX_CHARS_LIMIT = 1_000_000


class TextData:
    """Reads, parses and writes one text dataset (see the module docstring)."""

    def __init__(self, schema: DataSchema, input_dir: Path) -> None:
        self.text_field, self.label_field = schema.text_field, schema.label_field
        self.paths = sorted(p for p in input_dir.rglob("*.jsonl") if p.is_file())
        if not self.paths:
            raise SchemaError(f"no *.jsonl files under {input_dir}")
        for path in self.paths:
            _check_not_empty(path)

    def rows(self) -> Iterator[RawRow]:
        for path in self.paths:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    text = line.rstrip("\r\n")
                    yield RawRow({"file": path.name, "line": number}, text, text)

    def parse(self, line: str) -> Example:
        """One line's normalised text and label, or ``MalformedRecord`` naming what is wrong."""
        document = json_object(line)
        for name in (self.text_field, self.label_field):
            if name not in document:
                raise MalformedRecord("missing_field", name)
        text = normalised_text(document[self.text_field], self.text_field)
        label = _label(document[self.label_field], self.label_field)
        # Identical texts (ignoring case and spacing) are one record, whatever their labels.
        return Example(" ".join(text.lower().split()), (text, label), label)

    def write(self, splits: Mapping[str, list[Example]], output_dir: Path) -> WrittenSplits:
        """The split files, the text input schema and the baseline of the train split's texts."""
        files = {}
        for name, examples in splits.items():
            relative = f"{name}/{DATA_FILE}"
            path = output_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8", newline="") as handle:
                handle.writelines(self._line(example) for example in examples)
            files[relative] = len(examples)
        longest = max(len(e.value[0]) for examples in splits.values() for e in examples)
        max_chars = min(max(DEFAULT_MAX_CHARS, longest), MAX_CHARS_LIMIT)
        return WrittenSplits(
            files=files,
            input_schema={"kind": "text", "max_chars": max_chars},
            baseline=compute_baseline([e.value[0] for e in splits["train"]]),
            description={
                "text_field": self.text_field,
                "label_field": self.label_field,
                "max_chars": max_chars,
            },
        )

    def _line(self, example: Example) -> str:
        text, label = example.value
        return json.dumps({self.text_field: text, self.label_field: label}, ensure_ascii=False) + "\n"


def normalised_text(value: Any, field: str) -> str:
    """NFC, runs of whitespace collapsed, trimmed: what the prediction API makes of a request's text."""
    if not isinstance(value, str):
        raise MalformedRecord("wrong_type", f"{field} must be a string")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise MalformedRecord("empty_text", field)
    return text


def _label(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedRecord("wrong_type", f"{field} must be a string or an integer")
    label = str(value).strip()
    if not label:
        raise MalformedRecord("empty_label", field)
    return label


def _check_not_empty(path: Path) -> None:
    with path.open(encoding="utf-8", errors="replace") as handle:
        if not any(line.strip() for line in handle):
            raise SchemaError(f"{path.name} is empty; each line should be a JSON object")
