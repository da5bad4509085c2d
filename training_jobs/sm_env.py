"""The SageMaker training-container contract: every path and environment variable in one place.

Inside a SageMaker training container the layout is fixed under ``/opt/ml``. Locally the same
layout is laid out under a work folder and ``MLP_SM_ROOT`` points at it, so the training code
runs unchanged in both places. Explicit arguments beat environment variables, which beat defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Our own variable: where the container's /opt/ml tree lives (a folder of the local runner).
ROOT_ENV = "MLP_SM_ROOT"
DEFAULT_ROOT = "/opt/ml"
CHECKPOINTS = "checkpoints"  # below the root: where SageMaker syncs CheckpointConfig.S3Uri
CONTAINER_CHECKPOINT_DIR = f"{DEFAULT_ROOT}/{CHECKPOINTS}"

# Variables SageMaker sets in every training container.
SM_MODEL_DIR = "SM_MODEL_DIR"
SM_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
SM_CHANNELS = "SM_CHANNELS"
SM_CHANNEL_PREFIX = "SM_CHANNEL_"
SM_HPS = "SM_HPS"
SM_NUM_GPUS = "SM_NUM_GPUS"
SM_NUM_CPUS = "SM_NUM_CPUS"
SM_HOSTS = "SM_HOSTS"
SM_CURRENT_HOST = "SM_CURRENT_HOST"

# Variables torchrun sets in each worker process.
RANK = "RANK"
LOCAL_RANK = "LOCAL_RANK"
WORLD_SIZE = "WORLD_SIZE"


@dataclass(frozen=True)
class TrainingPaths:
    """The container's directory tree, rooted at ``root`` (``/opt/ml`` in SageMaker)."""

    root: Path

    @property
    def hyperparameters_file(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def input_data_dir(self) -> Path:
        return self.root / "input" / "data"

    def channel_dir(self, channel: str) -> Path:
        return self.input_data_dir / channel

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / CHECKPOINTS


@dataclass(frozen=True)
class TrainingEnv:
    """A typed, read-only view of the training container's environment."""

    paths: TrainingPaths
    model_dir: Path
    output_data_dir: Path
    channels: Mapping[str, Path] = field(default_factory=dict)
    num_gpus: int = 0
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main_process(self) -> bool:
        """Only rank 0 writes models, checkpoints and failure reasons."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TrainingEnv:
        env = os.environ if environ is None else environ
        paths = TrainingPaths(Path(env.get(ROOT_ENV, DEFAULT_ROOT)))
        return cls(
            paths=paths,
            model_dir=Path(env.get(SM_MODEL_DIR, str(paths.model_dir))),
            output_data_dir=Path(env.get(SM_OUTPUT_DATA_DIR, str(paths.output_data_dir))),
            channels=_channels(env, paths),
            num_gpus=int(env.get(SM_NUM_GPUS, "0")),
            hosts=tuple(json.loads(env.get(SM_HOSTS, '["algo-1"]'))),
            current_host=env.get(SM_CURRENT_HOST, "algo-1"),
            rank=int(env.get(RANK, "0")),
            local_rank=int(env.get(LOCAL_RANK, "0")),
            world_size=int(env.get(WORLD_SIZE, "1")),
        )

    def hyperparameters(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Hyperparameters as SageMaker hands them over: a JSON object of strings.

        The file ``input/config/hyperparameters.json`` wins over ``SM_HPS``; SageMaker writes
        both, the local runner too.
        """
        env = os.environ if environ is None else environ
        if self.paths.hyperparameters_file.is_file():
            raw = json.loads(self.paths.hyperparameters_file.read_text())
        else:
            raw = json.loads(env.get(SM_HPS, "{}"))
        return {str(key): str(value) for key, value in raw.items()}


def _channels(env: Mapping[str, str], paths: TrainingPaths) -> dict[str, Path]:
    """Channels named by ``SM_CHANNEL_<NAME>``, else the folders under ``input/data``."""
    channels = {
        key[len(SM_CHANNEL_PREFIX) :].lower(): Path(value)
        for key, value in env.items()
        if key.startswith(SM_CHANNEL_PREFIX)
    }
    if not channels and paths.input_data_dir.is_dir():
        channels = {p.name: p for p in sorted(paths.input_data_dir.iterdir()) if p.is_dir()}
    return channels
