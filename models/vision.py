"""Image classification: a small CNN for 8x8 grey-level digit images (values 0..16)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .architectures import register
from .base import CLASSIFICATION, TaskModel, numeric_rows


@dataclass
class DigitsCNNConfig:
    image_size: int = 8
    channels: list[int] = field(default_factory=lambda: [16, 32])
    hidden: int = 64
    dropout: float = 0.1
    pixel_max: float = 16.0
    labels: list[str] = field(default_factory=lambda: [str(d) for d in range(10)])


@register("digits-cnn", DigitsCNNConfig)
class DigitsCNN(TaskModel):
    task_kind = CLASSIFICATION

    def __init__(self, config: DigitsCNNConfig) -> None:
        super().__init__(config)
        first, second = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        pooled = config.image_size // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(second * pooled * pooled, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(config.labels)),
        )

    def forward(self, pixels: Tensor) -> Tensor:
        # Scaling inside the model: callers send raw pixel values, as the data files hold them.
        return self.classifier(self.features(pixels / self.config.pixel_max))

    def encode(self, instances: Sequence[Any]) -> tuple[Tensor, ...]:
        """Each instance: a flat row of size*size pixels or a size x size nested list."""
        size = self.config.image_size
        flat = [_flatten_image(instance, size) for instance in instances]
        rows = numeric_rows(flat, size * size)
        return (torch.tensor(rows, dtype=torch.float32).reshape(-1, 1, size, size),)


def _flatten_image(instance: Any, size: int) -> Any:
    if isinstance(instance, list) and len(instance) == size and all(isinstance(r, list) for r in instance):
        return [value for row in instance for value in row]
    return instance
