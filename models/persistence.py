"""Save and load a model as ``model.pt`` (state_dict) + ``model_config.json`` (name + config).

Loading needs only this package and torch: no training code, no pickled classes
(``weights_only=True``), so an artifact from an untrusted place cannot run code on load.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from . import architectures
from .base import TaskModel

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model_config.json"
FORMAT_VERSION = 1


def save_model(model: TaskModel, directory: Path) -> None:
    """Write the weights and the self-describing config into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    document = {
        "format_version": FORMAT_VERSION,
        "model": model.architecture_name,
        "task_kind": model.task_kind,
        "config": asdict(model.config),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def read_model_config(directory: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((directory / CONFIG_FILE).read_text())
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported model format {document.get('format_version')!r}")
    return document


def load_model(directory: Path, map_location: str | torch.device = "cpu") -> TaskModel:
    """Rebuild the architecture from its config and load the weights, in eval mode."""
    document = read_model_config(directory)
    spec = architectures.get(document["model"])
    model = architectures.build(spec.name, spec.config_from_dict(document["config"]))
    state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.to(map_location).eval()
