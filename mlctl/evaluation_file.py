"""The files registered beside a model: its ``evaluation.json``, input schema and drift baseline.

``evaluation.json`` is the platform's evaluation contract (docs/bring-your-own-model.md)::

    {"metrics": {"<name>": {"value": <number>, "direction": "higher" | "lower"}, ...},
     "dataset_version": "<optional>", "samples": <optional count>}

Each file is read and checked here, before anything is uploaded; a file not in its format is refused
with one line naming the option, the file and the problem.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handlers.common.contracts import BASELINE_FORMAT, HIGHER, LOWER, METRIC_DIRECTION_PREFIX
from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import AnyInputSchema, parse_input_schema
from handlers.registry.client import MAX_METADATA_KEY_CHARS
from mlctl.targets import EXIT_USAGE, CommandError

# The drift monitor's baseline format (training_jobs/baselines.py writes it, the monitor reads it).
# What SageMaker accepts in a metadata key (a metric's name becomes part of one).
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:/=+@-]+$")
_MAX_NAME_CHARS = MAX_METADATA_KEY_CHARS - len(METRIC_DIRECTION_PREFIX)


@dataclass(frozen=True)
class EvaluationReport:
    """A checked ``evaluation.json``: each metric's value and direction, and the file's bytes."""

    metrics: dict[str, float]
    directions: dict[str, str]
    dataset_version: str | None
    content: bytes


@dataclass(frozen=True)
class ServingFile:
    """A checked input schema or baseline, uploaded as it is."""

    content: bytes
    schema: AnyInputSchema | None = None


def read_evaluation_report(path: Path) -> EvaluationReport:
    """``--metrics FILE``, checked against the evaluation contract."""
    content, document = _read_json("--metrics", path)

    def refuse(problem: str) -> CommandError:
        return CommandError(f"--metrics {path} is not in the evaluation format: {problem}", EXIT_USAGE)

    if not isinstance(document, dict) or not isinstance(document.get("metrics"), dict):
        raise refuse('it needs {"metrics": {"<name>": {"value": <number>, "direction": "higher"|"lower"}}}')
    if not document["metrics"]:
        raise refuse('"metrics" is empty')
    metrics, directions = {}, {}
    for name, entry in document["metrics"].items():
        metrics[name], directions[name] = _metric(name, entry, refuse)
    dataset_version = document.get("dataset_version")
    if dataset_version is not None and not (isinstance(dataset_version, str) and dataset_version):
        raise refuse('"dataset_version" must be a non-empty string')
    samples = document.get("samples")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 0):
        raise refuse('"samples" must be a count (a non-negative integer)')
    return EvaluationReport(metrics, directions, dataset_version, content)


def read_input_schema(path: Path) -> ServingFile:
    """``--input-schema FILE``: the document the prediction API validates requests with."""
    content, _ = _read_json("--input-schema", path)
    try:
        schema = parse_input_schema(content, f"--input-schema {path}")
    except ConfigurationError as exc:
        raise CommandError(exc.message, EXIT_USAGE) from None
    return ServingFile(content, schema)


def read_baseline(path: Path) -> ServingFile:
    """``--baseline FILE``: the drift monitor's baseline of the training data."""
    content, document = _read_json("--baseline", path)
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise CommandError(
            f'--baseline {path} is not a baseline: "format" must be {BASELINE_FORMAT!r}', EXIT_USAGE
        )
    if not isinstance(document.get("features"), dict):
        raise CommandError(f'--baseline {path} is not a baseline: "features" must be an object', EXIT_USAGE)
    return ServingFile(content)


def _metric(name: str, entry: Any, refuse: Any) -> tuple[float, str]:
    if not _METRIC_NAME.match(name) or len(name) > _MAX_NAME_CHARS:
        raise refuse(f"metric name {name!r} must be 1 to {_MAX_NAME_CHARS} of A-Z a-z 0-9 _ . : / = + @ -")
    if not isinstance(entry, dict):
        raise refuse(f'metric {name!r} must be {{"value": <number>, "direction": "higher"|"lower"}}')
    value, direction = entry.get("value"), entry.get("direction")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise refuse(f"metric {name!r} needs a finite number as its value, not {value!r}")
    if direction not in (HIGHER, LOWER):
        raise refuse(f"metric {name!r} needs a direction, {HIGHER!r} or {LOWER!r}, not {direction!r}")
    return float(value), str(direction)


def _read_json(option: str, path: Path) -> tuple[bytes, Any]:
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{option} {path} does not exist", EXIT_USAGE) from None
    except OSError as exc:
        raise CommandError(f"{option} {path} cannot be read: {exc.strerror}", EXIT_USAGE) from None
    try:
        return content, json.loads(content)
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"{option} {path} is not JSON: {exc}", EXIT_USAGE) from None
