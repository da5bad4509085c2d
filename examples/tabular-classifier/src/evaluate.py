"""Score the trained model on the test split and write ``evaluation.json`` (the platform's contract).

Run by the pipeline's Evaluate step as ``python evaluate.py --model-dir ... --test-dir ...
--output-dir ...``; the model directory holds the training job's ``model.tar.gz``. Each metric
states its direction, so the platform's gates know which way is better.
"""

from __future__ import annotations

import argparse
import csv
import json
import tarfile
import tempfile
from pathlib import Path

import torch

TARGET = "churned"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = unpacked(args.model_dir, Path(scratch))
        model = torch.jit.load(str(folder / "model.pt"), map_location="cpu").eval()
        labels = json.loads((folder / "labels.json").read_text())["labels"]
    (path,) = sorted(args.test_dir.glob("*.csv"))
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    features = [name for name in rows[0] if name != TARGET]
    x = torch.tensor([[float(row[name]) for name in features] for row in rows])
    truth = [labels.index(row[TARGET]) if row[TARGET] in labels else -1 for row in rows]
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1).tolist()
    report = {
        "samples": len(rows),
        "metrics": {
            "accuracy": {
                "value": sum(p == t for p, t in zip(predicted, truth, strict=False)) / len(rows),
                "direction": "higher",
            },
            "macro_f1": {"value": macro_f1(truth, predicted, len(labels)), "direction": "higher"},
        },
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["metrics"]))


def unpacked(model_dir: Path, scratch: Path) -> Path:
    archive = model_dir / "model.tar.gz"
    if not archive.is_file():
        return model_dir
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
    return scratch


def macro_f1(truth: list[int], predicted: list[int], classes: int) -> float:
    scores = []
    for label in range(classes):
        tp = sum(t == p == label for t, p in zip(truth, predicted, strict=False))
        fp = sum(p == label != t for t, p in zip(truth, predicted, strict=False))
        fn = sum(t == label != p for t, p in zip(truth, predicted, strict=False))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / classes


if __name__ == "__main__":
    main()
