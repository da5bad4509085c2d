"""The sample request a trained model carries in its artifact: ``code/sample-request.json``.

One JSON request body in the form the endpoint receives (what the prediction API sends after its
input schema has validated and converted a caller's instance), built from the model's own config:
a blank image for the image model, a short text for the text model, the training means (or zeros)
for the tabular model. The model server sends it through ``input_fn -> predict_fn -> output_fn``
before ``/ping`` turns healthy (``handlers/serving/warmup.py``), so the first real request finds
the model warm. The training container ships without ``handlers``, so the file name is repeated
here; a test keeps it equal to ``handlers.common.contracts.SAMPLE_REQUEST_FILE``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models import CONFIG_FILE, architectures, persistence

SAMPLE_REQUEST_FILE = "code/sample-request.json"
SAMPLE_TEXT = "a sample request to warm the model up"


def sample_instance(config: Any) -> Any:
    """One instance of the raw form the architecture configured by ``config`` encodes."""
    if hasattr(config, "image_size"):
        return [0.0] * (int(config.image_size) ** 2)  # a flat row of pixels, as the API sends it
    if hasattr(config, "max_chars"):
        return SAMPLE_TEXT[: int(config.max_chars)]
    if hasattr(config, "num_features"):
        means = list(getattr(config, "feature_mean", None) or [])
        return [float(v) for v in means] if means else [0.0] * int(config.num_features)
    raise ValueError(f"no sample instance for a model configured by {type(config).__name__}")


def sample_request(model_dir: Path) -> bytes:
    """The sample request body for the model saved in ``model_dir`` (its ``model_config.json``)."""
    document = persistence.read_model_config(model_dir)
    config = architectures.get(document["model"]).config_from_dict(document["config"])
    return json.dumps({"instances": [sample_instance(config)]}).encode()


def write_sample_request(model_dir: Path) -> Path | None:
    """Write ``code/sample-request.json`` into ``model_dir``; None when it holds no saved model."""
    if not (model_dir / CONFIG_FILE).is_file():
        return None
    path = model_dir / SAMPLE_REQUEST_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sample_request(model_dir))
    return path
