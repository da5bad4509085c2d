"""PyTorch architectures for the platform's tasks, by name.

This package imports only torch and the standard library: ``training_jobs/package.py`` copies
it into ``model.tar.gz`` (``code/models/``) so the serving handler can rebuild the model.
"""

from . import tabular, text, vision
from .architectures import build, get, names
from .base import CLASSIFICATION, REGRESSION, InputShapeError, TaskModel
from .persistence import CONFIG_FILE, WEIGHTS_FILE, load_model, save_model

__all__ = [
    "CLASSIFICATION",
    "CONFIG_FILE",
    "REGRESSION",
    "WEIGHTS_FILE",
    "InputShapeError",
    "TaskModel",
    "build",
    "get",
    "load_model",
    "names",
    "save_model",
    "tabular",
    "text",
    "vision",
]
