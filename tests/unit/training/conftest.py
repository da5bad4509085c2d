"""Shared fixtures: raw data -> prepared splits -> trained models, each built once per session."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from training_jobs import prepare, train
from training_jobs.datasets import write_raw
from training_jobs.hyperparameters import parse_hyperparameters
from training_jobs.sm_env import TrainingEnv, TrainingPaths

REPO_ROOT = Path(__file__).resolve().parents[3]
# The suite shares two cores with other processes: one intra-op thread per process avoids
# oversubscription, which slows these small models several-fold.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session", autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)


def training_env(root: Path, splits: Path, *, rank: int = 0, world_size: int = 1) -> TrainingEnv:
    """The environment SageMaker would give a job rooted at ``root`` reading ``splits``."""
    paths = TrainingPaths(root)
    return TrainingEnv(
        paths=paths,
        model_dir=paths.model_dir,
        output_data_dir=paths.output_data_dir,
        channels={"train": splits / "train", "validation": splits / "validation"},
        rank=rank,
        world_size=world_size,
    )


def subprocess_env(root: Path, splits: Path, **extra: str) -> dict[str, str]:
    """Environment for ``python -m training_jobs.train`` as a SageMaker container would set it."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "MLP_", "RANK", "WORLD"))}
    return {
        **inherited,
        "MLP_SM_ROOT": str(root),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNEL_TRAIN": str(splits / "train"),
        "SM_CHANNEL_VALIDATION": str(splits / "validation"),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        **SINGLE_THREAD,
        **extra,
    }


@dataclass(frozen=True)
class TrainedRun:
    task: str
    splits: Path
    root: Path
    stdout: str
    history: list[dict[str, float]]

    @property
    def model_dir(self) -> Path:
        return self.root / "model"


@pytest.fixture(scope="session")
def prepared_splits(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """task -> folder with train/validation/test splits and manifest.json (built once)."""
    cache: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in cache:
            base = tmp_path_factory.mktemp(f"data-{task}")
            write_raw(task, base / "raw")
            prepare.prepare(task, base / "raw", base / "processed")
            cache[task] = base / "processed"
        return cache[task]

    return get


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, prepared_splits: Callable[[str], Path]
) -> Callable[[str], TrainedRun]:
    """task -> a model trained in-process with the task's default hyperparameters (built once)."""
    cache: dict[str, TrainedRun] = {}

    def get(task: str) -> TrainedRun:
        if task not in cache:
            splits = prepared_splits(task)
            root = tmp_path_factory.mktemp(f"job-{task}")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                history = train.run(training_env(root, splits), parse_hyperparameters({"task": task}))
            cache[task] = TrainedRun(task, splits, root, out.getvalue(), history)
        return cache[task]

    return get
