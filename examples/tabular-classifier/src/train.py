"""Train a churn classifier: a plain SageMaker script-mode entry point.

SageMaker (and `mlctl local up`) runs it as ``python train.py --epochs 40 --learning-rate 0.01``
with the training container contract: the prepared splits in ``SM_CHANNEL_TRAIN`` and
``SM_CHANNEL_VALIDATION`` (CSV with a header, the target column last), the model to
``SM_MODEL_DIR``. It imports nothing of the platform: copy this folder and change it freely.

What it writes is a SageMaker PyTorch model folder: ``model.pt`` (TorchScript, standardisation
inside), ``labels.json`` and ``code/inference.py`` (how the endpoint answers).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

TARGET = "churned"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--learning-rate", "--learning_rate", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train", type=Path, default=Path(os.environ.get("SM_CHANNEL_TRAIN", "data/train")))
    parser.add_argument(
        "--validation", type=Path, default=Path(os.environ.get("SM_CHANNEL_VALIDATION", "data/validation"))
    )
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", "model")))
    return parser.parse_args()


def read_split(folder: Path) -> tuple[list[str], list[list[float]], list[str]]:
    """Feature names, feature rows and labels of the one CSV file in ``folder``."""
    (path,) = sorted(folder.glob("*.csv"))
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    features = [name for name in rows[0] if name != TARGET]
    return features, [[float(row[name]) for name in features] for row in rows], [row[TARGET] for row in rows]


class Classifier(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden: int, classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(nn.Linear(len(mean), hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    features, train_rows, train_labels = read_split(args.train)
    _, validation_rows, validation_labels = read_split(args.validation)
    labels = sorted(set(train_labels))
    x = torch.tensor(train_rows)
    y = torch.tensor([labels.index(label) for label in train_labels])
    xv = torch.tensor(validation_rows)
    yv = torch.tensor([labels.index(label) for label in validation_labels])
    model = Classifier(x.mean(dim=0), x.std(dim=0).clamp_min(1e-6), args.hidden, len(labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    for epoch in range(1, args.epochs + 1):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
        print(
            f"epoch={epoch} loss={loss.item():.4f} validation_accuracy={accuracy(model, xv, yv):.4f}",
            flush=True,
        )
    args.model_dir.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(model.eval()), str(args.model_dir / "model.pt"))
    (args.model_dir / "labels.json").write_text(json.dumps({"labels": labels, "features": features}))
    code = args.model_dir / "code"
    code.mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("inference.py"), code / "inference.py")


if __name__ == "__main__":
    main()
