"""A model trained outside the platform, exported as the platform registers it.

Trains a small sensor-fault classifier with plain PyTorch (nothing of the platform is imported) and
writes, into the folder given as the only argument:

- ``model.tar.gz``: a lone TorchScript ``model.pt``; the platform's default handler serves it
  (JSON ``{"instances": [[...], ...]}`` in, the model's output rows out);
- ``evaluation.json``: its held-out metrics, each with its direction (the platform's contract);
- ``input-schema.json``: the four features the API validates requests against;
- ``example.json``: one request, answered before anything is uploaded.

Run: ``python export_model.py build/pretrained``.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import torch
from torch import nn

FEATURES = ("temperature", "vibration", "pressure", "current")
CLASSES = 3  # ok, worn, failing


def sensor_data(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, len(FEATURES), generator=generator)
    wear = 0.9 * x[:, 1] + 0.6 * x[:, 0] - 0.3 * x[:, 2] + 0.2 * torch.randn(rows, generator=generator)
    y = (wear > -0.4).long() + (wear > 0.8).long()
    return x, y


def train() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(len(FEATURES), 16), nn.ReLU(), nn.Linear(16, CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = sensor_data(1500, seed=1)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def main(out: Path) -> None:
    model = train()
    x, y = sensor_data(400, seed=2)  # held out
    with torch.no_grad():
        accuracy = float((model(x).argmax(dim=1) == y).float().mean())
    out.mkdir(parents=True, exist_ok=True)
    weights = io.BytesIO()
    torch.jit.save(torch.jit.script(model), weights)
    with tarfile.open(out / "model.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("model.pt")
        info.size = len(weights.getvalue())
        archive.addfile(info, io.BytesIO(weights.getvalue()))
    report = {"samples": len(y), "metrics": {"accuracy": {"value": accuracy, "direction": "higher"}}}
    (out / "evaluation.json").write_text(json.dumps(report, indent=2))
    (out / "input-schema.json").write_text(json.dumps({"kind": "tabular", "feature_names": list(FEATURES)}))
    (out / "example.json").write_text(json.dumps({"instances": [[0.5, 1.2, -0.3, 0.1]]}))
    print(f"wrote {out}/model.tar.gz (held-out accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/pretrained"))
