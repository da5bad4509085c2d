"""Test-set evaluation -> ``evaluation.json`` (shape and JSON paths in ``evaluation_report``).

Runs as a SageMaker Processing job (``python -m training_jobs.evaluate``: the model under
``/opt/ml/processing/input/model`` — a directory or the training job's ``model.tar.gz`` —,
the test split under ``.../input/test``, the report to ``.../output``; ``MLP_PROCESSING_ROOT``
moves the root, arguments override) and as a function (``evaluate(...)``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models import CLASSIFICATION, REGRESSION, TaskModel, load_model

from .baselines import BASELINE_FILE
from .evaluation_report import EVALUATION_FILE, build_report, classification_metrics, regression_metrics
from .input_contract import INPUT_SCHEMA_FILE
from .model_scoring import TABULAR_SPLIT_FILE, ScoringError, score_tabular
from .prepare import DEFAULT_PROCESSING_ROOT, MANIFEST_FILE, PROCESSING_ROOT_ENV
from .tasks import Record, get_task, read_records
from .train import METADATA_FILE

MODEL_ARCHIVE = "model.tar.gz"
PREDICT_BATCH = 512


@torch.inference_mode()
def predict(model: TaskModel, records: Sequence[Record]) -> list[float]:
    """Class index (classification) or value (regression) per record, in batches."""
    model.eval()
    predictions: list[float] = []
    for start in range(0, len(records), PREDICT_BATCH):
        chunk = records[start : start + PREDICT_BATCH]
        instances = [r.features if isinstance(r.features, str) else list(r.features) for r in chunk]
        output = model(*model.encode(instances))
        values = output if model.task_kind == REGRESSION else output.argmax(dim=1)
        predictions.extend(float(v) for v in values.detach().cpu().tolist())
    return predictions


def evaluate(
    model_dir: Path,
    test_dir: Path,
    output_dir: Path,
    *,
    dataset_version: str | None = None,
    problem: str = CLASSIFICATION,
    manifest: Path | None = None,
) -> dict[str, Any]:
    """Score the model in ``model_dir`` on ``test_dir``'s split; writes and returns the report.

    A model the platform trained is scored with its own architecture; any other (a team's, in the
    SageMaker PyTorch layout) through its inference functions on a tabular split
    (:mod:`training_jobs.model_scoring`), as a ``problem`` with the classes of ``manifest``.
    """
    with tempfile.TemporaryDirectory() as scratch:
        model_path = _model_directory(model_dir, Path(scratch))
        if not (model_path / METADATA_FILE).is_file():
            report = _team_model_report(model_path, test_dir, problem, manifest, dataset_version)
            return _write_report(report, output_dir)
        metadata = json.loads((model_path / METADATA_FILE).read_text())
        model = load_model(model_path)
    task = get_task(metadata["task"])
    records = read_records(task, test_dir / task.file_name)
    predicted = predict(model, records)
    if task.kind == REGRESSION:
        metrics = regression_metrics([float(r.target) for r in records], predicted)
    else:
        metrics = classification_metrics([int(r.target) for r in records], [int(p) for p in predicted])
    report = build_report(
        metrics,
        model=model.architecture_name,
        task=task.name,
        dataset_version=dataset_version or _manifest_version(test_dir) or metadata.get("dataset_version"),
        samples=len(records),
    )
    return _write_report(report, output_dir)


def _team_model_report(
    model_path: Path, test_dir: Path, problem: str, manifest: Path | None, dataset_version: str | None
) -> dict[str, Any]:
    """The report of a model the platform did not train, scored through its serving functions."""
    document = json.loads(manifest.read_text()) if manifest is not None and manifest.is_file() else {}
    metrics = score_tabular(model_path, test_dir, problem, sorted(document.get("classes") or {}))
    with (test_dir / TABULAR_SPLIT_FILE).open(encoding="utf-8") as split:
        samples = sum(1 for _ in split) - 1  # less the header
    return build_report(
        metrics,
        model="team-model",
        task=problem,
        dataset_version=dataset_version or document.get("dataset_version") or _manifest_version(test_dir),
        samples=samples,
    )


def _write_report(report: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EVALUATION_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _model_directory(model_dir: Path, scratch: Path) -> Path:
    """A directory holding the model files: ``model_dir`` itself, or its extracted archive."""
    archive = model_dir / MODEL_ARCHIVE
    if not archive.is_file():
        return model_dir
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")  # "data" refuses absolute paths, links out, devices
    return scratch


def _manifest_version(test_dir: Path) -> str | None:
    for path in (test_dir / MANIFEST_FILE, test_dir.parent / MANIFEST_FILE):
        if path.is_file():
            return str(json.loads(path.read_text())["dataset_version"])
    return None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    root = Path(os.environ.get(PROCESSING_ROOT_ENV, DEFAULT_PROCESSING_ROOT))
    parser = argparse.ArgumentParser(description="Evaluate a trained model on the test split.")
    parser.add_argument("--model-dir", type=Path, default=root / "input" / "model")
    parser.add_argument("--test-dir", type=Path, default=root / "input" / "test")
    parser.add_argument("--output-dir", type=Path, default=root / "output")
    parser.add_argument("--dataset-version", default=None)
    parser.add_argument(
        "--problem",
        choices=(CLASSIFICATION, REGRESSION),
        default=CLASSIFICATION,
        help="for a model the platform did not train: what its answers are",
    )
    parser.add_argument(
        "--manifest", type=Path, default=None, help="the dataset's manifest.json (its classes and version)"
    )
    return parser.parse_args(argv)


# Written by training into the model; the evaluation output is where the deployer finds them
# (handlers/deployer/serving_files.py): next to the report the registry entry points at.
SERVING_FILES = (INPUT_SCHEMA_FILE, BASELINE_FILE)


def copy_serving_files(model_dir: Path, output_dir: Path) -> list[str]:
    """Copy the model's serving files (an extracted folder or a ``model.tar.gz``) next to the report."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = _model_directory(model_dir, Path(scratch))
        copied = []
        for name in SERVING_FILES:
            if (folder / name).is_file():
                output_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, output_dir / name)
                copied.append(name)
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        report = evaluate(
            args.model_dir,
            args.test_dir,
            args.output_dir,
            dataset_version=args.dataset_version,
            problem=args.problem,
            manifest=args.manifest,
        )
    except ScoringError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    copy_serving_files(args.model_dir, args.output_dir)
    print(json.dumps(report["metrics"], sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
