"""How the endpoint answers: the SageMaker PyTorch inference functions for the churn classifier.

Request: ``{"instances": [[feature, ...], ...]}`` (the API sends rows in the input schema's order).
Answer: ``{"predictions": [{"label": "yes", "confidence": 0.93}, ...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def model_fn(model_dir: str) -> dict[str, Any]:
    folder = Path(model_dir)
    model = torch.jit.load(str(folder / "model.pt"), map_location="cpu").eval()
    return {"model": model, "labels": json.loads((folder / "labels.json").read_text())["labels"]}


def input_fn(body: bytes | str, content_type: str) -> torch.Tensor:
    if content_type.split(";", maxsplit=1)[0].strip() != "application/json":
        raise ValueError(f"unsupported content type {content_type}")
    document = json.loads(body)
    rows = document["instances"] if isinstance(document, dict) else document
    return torch.tensor(rows, dtype=torch.float32)


def predict_fn(rows: torch.Tensor, loaded: dict[str, Any]) -> list[dict[str, Any]]:
    with torch.inference_mode():
        probabilities = torch.softmax(loaded["model"](rows), dim=1)
    confidence, index = probabilities.max(dim=1)
    labels = loaded["labels"]
    return [
        {"label": labels[i], "confidence": round(float(c), 6)}
        for i, c in zip(index.tolist(), confidence.tolist(), strict=True)
    ]


def output_fn(predictions: list[dict[str, Any]], accept: str) -> tuple[str, str]:
    return json.dumps({"predictions": predictions}), "application/json"
