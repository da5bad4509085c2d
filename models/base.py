"""What every architecture shares: its task kind, its config, and how it turns raw instances into tensors.

Featurisation lives beside the architecture (not in the training job or the handler) so training
and serving cannot drift apart: both call ``encode`` on the same raw instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

CLASSIFICATION = "classification"
REGRESSION = "regression"


class InputShapeError(ValueError):
    """Raw instances do not have the shape the model was trained on (serving answers 422)."""


class TaskModel(nn.Module):
    """A registered architecture: built from a dataclass config, fed by ``encode``."""

    architecture_name: ClassVar[str] = ""
    task_kind: ClassVar[str] = CLASSIFICATION

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def encode(self, instances: Sequence[Any]) -> tuple[Tensor, ...]:
        """Turn raw instances (as a caller or a data file holds them) into forward() arguments."""
        raise NotImplementedError

    @property
    def labels(self) -> list[str]:
        """Class names in output order; empty for regression."""
        return list(getattr(self.config, "labels", []))


def numeric_rows(instances: Sequence[Any], width: int) -> list[list[float]]:
    """Validate that every instance is a flat row of ``width`` numbers."""
    rows: list[list[float]] = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, list | tuple) or len(instance) != width:
            got = len(instance) if isinstance(instance, list | tuple) else type(instance).__name__
            raise InputShapeError(f"instance {index}: expected {width} numbers, got {got}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in instance):
            raise InputShapeError(f"instance {index}: every value must be a number")
        rows.append([float(v) for v in instance])
    return rows
