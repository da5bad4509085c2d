"""The generic evaluator scores a model the platform did not train through its serving functions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from training_jobs.data_schema import DataSchema
from training_jobs.evaluate import evaluate
from training_jobs.model_scoring import ScoringError, class_of
from training_jobs.prepare import prepare_dataset

from .conftest import REPO_ROOT

FEATURES = ["x1", "x2"]


def raw_rows(count: int = 200) -> list[list[object]]:
    """Rows whose label is "high" exactly when x1 + x2 > 0: a model that knows this scores 1.0."""
    rows: list[list[object]] = []
    for i in range(count):
        x1, x2 = (i % 17) - 8.5, (i * 7 % 13) - 6.0
        rows.append([x1, x2, "high" if x1 + x2 > 0 else "low"])
    return rows


class Scores(nn.Module):
    """Class scores in sorted class order: column 0 "high", column 1 "low"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=1, keepdim=True)
        return torch.cat([total, -total], dim=1)


def prepared(folder: Path, rows: list[list[object]], target: str, problem: str = "classification") -> Path:
    """The generic preparer's output for a raw CSV of ``rows`` (its test split, manifest beside it)."""
    (folder / "raw").mkdir(parents=True)
    with (folder / "raw" / "data.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, target])
        writer.writerows(rows)
    schema = DataSchema(format="csv", target=target, problem=problem)
    prepare_dataset(schema, folder / "raw", folder / "prepared")
    return folder / "prepared" / "test"


def packed(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    with tarfile.open(folder / "model.tar.gz", "w:gz") as archive:
        for name, data in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            archive.add(path, arcname=name)
            path.unlink()
    return folder


def torchscript(module: nn.Module, path: Path) -> bytes:
    torch.jit.save(torch.jit.script(module), str(path))
    return path.read_bytes()


def test_a_torchscript_models_class_scores_are_read_in_sorted_class_order(tmp_path: Path) -> None:
    # GIVEN a lone TorchScript model (the default functions serve it) answering class scores
    test = prepared(tmp_path / "data", raw_rows(), "level")
    model = packed(tmp_path / "model", {"model.pt": torchscript(Scores(), tmp_path / "m.pt")})
    # WHEN the generic evaluator scores it on the generic preparer's test split
    manifest = test.parent / "manifest.json"
    report = evaluate(model, test, tmp_path / "out", manifest=manifest)
    # THEN every row is right, the metrics state their directions, the dataset is the manifest's
    assert report["metrics"]["accuracy"] == {"value": 1.0, "direction": "higher"}
    assert report["dataset_version"] == json.loads(manifest.read_text())["dataset_version"]
    assert report["samples"] == sum(
        counts["test"] for counts in json.loads(manifest.read_text())["classes"].values()
    )
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text()) == report


def test_a_models_own_inference_code_answering_labels_is_scored_through_it(tmp_path: Path) -> None:
    # GIVEN a model whose code/inference.py answers {"predictions": [{"label": ...}]}, always "high"
    inference = textwrap.dedent(
        """
        import json
        def model_fn(model_dir):
            return "always-high"
        def predict_fn(data, model):
            return [{"label": "high"} for _ in data]
        def output_fn(prediction, accept):
            return json.dumps({"predictions": prediction}), accept
        """
    ).encode()
    test = prepared(tmp_path / "data", raw_rows(), "level")
    model = packed(tmp_path / "model", {"code/inference.py": inference})
    # THEN exactly the "high" rows are right
    report = evaluate(model, test, tmp_path / "out", manifest=test.parent / "manifest.json")
    with (test / "data.csv").open(newline="") as handle:
        labels = [row["level"] for row in csv.DictReader(handle)]
    assert report["metrics"]["accuracy"]["value"] == labels.count("high") / len(labels)


def test_a_regression_model_is_scored_with_error_metrics_in_their_direction(tmp_path: Path) -> None:
    class Sum(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=1)

    # every target is x1 + x2 + 1: the model is off by exactly one on every row
    rows: list[list[object]] = [[x1, x2, x1 + x2 + 1] for x1, x2, _ in raw_rows()]
    test = prepared(tmp_path / "data", rows, "y", problem="regression")
    model = packed(tmp_path / "model", {"model.pt": torchscript(Sum(), tmp_path / "m.pt")})
    report = evaluate(model, test, tmp_path / "out", problem="regression")
    assert report["metrics"]["mae"] == {"value": pytest.approx(1.0), "direction": "lower"}


def test_an_answer_the_evaluator_cannot_read_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # GIVEN a model answering something that names no class
    inference = b"import json\ndef output_fn(prediction, accept):\n    return json.dumps({'odd': 1})\n"
    test = prepared(tmp_path / "data", raw_rows(), "level")
    model = packed(
        tmp_path / "model",
        {"code/inference.py": inference, "model.pt": torchscript(Scores(), tmp_path / "m.pt")},
    )
    # WHEN the evaluation job runs it, THEN it says why in one line, without a traceback
    result = subprocess.run(
        [sys.executable, "-m", "training_jobs.evaluate", "--model-dir", str(model), "--test-dir", str(test)]
        + ["--output-dir", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'evaluate: the model\'s answer is neither a list nor {"predictions": [...]}'
    ]


@pytest.mark.parametrize("answer", [[0.1, 0.0, 0.9], 7, {"score": 1}, True])
def test_items_that_name_no_known_class_are_refused(answer: object) -> None:
    # scores for a third class, an index past the classes, an object without a label, a boolean
    with pytest.raises(ScoringError):
        class_of(answer, ["high", "low"])
