"""Tabular regression: an MLP that standardises its own inputs and un-scales its output.

The standardisation statistics live in the config (and so in ``model_config.json``), so a
server feeds raw feature values and gets predictions in the target's own units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .architectures import register
from .base import REGRESSION, TaskModel, numeric_rows


@dataclass
class TabularRegressorConfig:
    num_features: int = 10
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.0
    feature_mean: list[float] = field(default_factory=list)
    feature_std: list[float] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    feature_names: list[str] = field(default_factory=list)


@register("tabular-mlp", TabularRegressorConfig)
class TabularRegressor(TaskModel):
    task_kind = REGRESSION
    feature_mean: Tensor
    feature_std: Tensor

    def __init__(self, config: TabularRegressorConfig) -> None:
        super().__init__(config)
        width = config.num_features
        mean = config.feature_mean or [0.0] * width
        std = config.feature_std or [1.0] * width
        if len(mean) != width or len(std) != width:
            raise ValueError(f"feature_mean/feature_std need {width} values")
        # Buffers, not parameters: saved with the weights, never trained.
        self.register_buffer("feature_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(std, dtype=torch.float32).clamp_min(1e-8))
        layers: list[nn.Module] = []
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        scaled = (features - self.feature_mean) / self.feature_std
        return self.net(scaled).squeeze(-1) * self.config.target_std + self.config.target_mean

    def encode(self, instances: Sequence[Any]) -> tuple[Tensor, ...]:
        rows = numeric_rows(instances, self.config.num_features)
        return (torch.tensor(rows, dtype=torch.float32).reshape(-1, self.config.num_features),)
