"""``code/inference.py`` of the serving benchmark's model folder (copied there by ``bench/serving.py``).

The body format every server in the benchmark accepts: ``application/json``, either
``{"instances": [[512 floats], ...]}`` or a bare list of rows; the answer is
``{"predictions": [[10 floats], ...]}``. ``model_fn`` and ``predict_fn`` are left to the server's
defaults (load ``model.pth`` as TorchScript, run it without gradients). Decoding uses orjson and
numpy, the fastest well-kept codecs for rows of floats; the tuned TorchServe handler uses the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import torch


def input_fn(request_body: bytes | str, request_content_type: str | None) -> torch.Tensor:
    """Rows of the JSON body as one float32 tensor of shape (rows, 512)."""
    payload: Any = orjson.loads(request_body)
    rows = payload["instances"] if isinstance(payload, dict) else payload
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))


def output_fn(prediction: torch.Tensor, accept: str | None) -> bytes:
    """The model's outputs as ``{"predictions": [...]}``."""
    return orjson.dumps({"predictions": prediction.detach().cpu().tolist()})
