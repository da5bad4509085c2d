"""The serving input contract of a trained model: ``input-schema.json``, saved next to the model.

The prediction API validates every request against it before anything reaches the endpoint
(``handlers/common/input_schema.py`` defines the document; the API reads it from
``artifacts/serving/input-schema.json``, where a deployment publishes the served model's copy).
It is derived from the architecture's own config, so the API and the model agree on shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.base import TaskModel

from .tasks import TaskSpec

INPUT_SCHEMA_FILE = "input-schema.json"


def input_schema_document(task: TaskSpec, model: TaskModel) -> dict[str, Any]:
    """The schema document of ``model`` trained for ``task`` (image, text or tabular)."""
    config = model.config
    if hasattr(config, "image_size"):
        return {
            "kind": "image",
            "height": int(config.image_size),
            "width": int(config.image_size),
            "channels": 1,
            "max_value": int(config.pixel_max),
        }
    if hasattr(config, "max_chars"):
        return {"kind": "text", "max_chars": int(config.max_chars)}
    # The tabular model standardises inside itself: no means/stds here, or features scale twice.
    return {"kind": "tabular", "feature_names": list(task.feature_names)}


def write_input_schema(model_dir: Path, task: TaskSpec, model: TaskModel) -> Path:
    """Write ``input-schema.json`` into ``model_dir`` (it travels in ``model.tar.gz``)."""
    path = model_dir / INPUT_SCHEMA_FILE
    path.write_text(json.dumps(input_schema_document(task, model), indent=2) + "\n")
    return path
