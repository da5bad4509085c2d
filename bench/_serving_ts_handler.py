"""TorchServe handler for the tuned TorchServe configuration of ``bench/serving.py``.

TorchServe hands a handler up to ``batchSize`` requests at once; this one decodes them all, runs
ONE forward pass over the concatenated rows and splits the outputs back per request (the SageMaker
toolkit's handler runs its functions per request instead). Same body format as
``bench/_serving_inference.py``, decoded the same way (orjson + numpy). Copied into the model store
as ``handler.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch


class BatchedMLP:
    def __init__(self) -> None:
        self.model: Any = None

    def initialize(self, context: Any) -> None:
        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))
        model_dir = Path(context.system_properties["model_dir"])
        self.model = torch.jit.load(str(model_dir / "model.pth"), map_location="cpu").eval()

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        counts: list[int] = []
        rows: list[Any] = []
        for request in data:
            payload: Any = request.get("body")
            if payload is None:
                payload = request.get("data")
            if isinstance(payload, bytes | bytearray | str):
                payload = orjson.loads(payload)
            instances = payload["instances"] if isinstance(payload, dict) else payload
            counts.append(len(instances))
            rows.extend(instances)
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(np.asarray(rows, dtype=np.float32))).tolist()
        answers: list[str] = []
        start = 0
        for count in counts:
            answers.append(orjson.dumps({"predictions": outputs[start : start + count]}).decode())
            start += count
        return answers


_service = BatchedMLP()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[str] | None:
    """TorchServe's entry point: initialize on first call, then serve a batch."""
    if _service.model is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
