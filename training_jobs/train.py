"""The training job: SageMaker's training-container contract around the ``Trainer``.

Run as ``python -m training_jobs.train [--name value ...]`` (one process) or under
``torchrun --nproc_per_node N -m training_jobs.train`` (DistributedDataParallel). Paths come
from ``sm_env`` (``/opt/ml`` in SageMaker, ``MLP_SM_ROOT`` locally): hyperparameters from
``input/config/hyperparameters.json`` (CLI arguments win), data from the ``train`` and
``validation`` channels, the model to ``SM_MODEL_DIR``, checkpoints to ``<root>/checkpoints``
(resumed automatically), and on any error the reason to ``<root>/output/failure`` and a
non-zero exit code.
"""

from __future__ import annotations

import json
import os
import random
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from models import REGRESSION, TaskModel, build, save_model

from . import data, distributed
from .baselines import validation_confidences, write_baseline
from .hyperparameters import HyperparameterError, Hyperparameters, parse_cli, parse_hyperparameters
from .input_contract import write_input_schema
from .metrics import METRIC_DEFINITIONS
from .prepare import MANIFEST_FILE
from .serving_code import write_serving_code
from .sm_env import TrainingEnv
from .tasks import Record, TaskSpec, get_task
from .trainer import EpochCallback, Trainer, TrainerConfig

__all__ = ["METRIC_DEFINITIONS", "main", "run"]

HISTORY_FILE = "training_history.json"
METADATA_FILE = "training_metadata.json"
# Test hook standing in for a spot interruption: exit hard (no cleanup) after this epoch.
FAULT_EXIT_ENV = "MLP_FAULT_EXIT_AFTER_EPOCH"
FAULT_EXIT_CODE = 137


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def loss_function(task: TaskSpec, model: TaskModel) -> nn.Module:
    if task.kind == REGRESSION:
        return ScaledMSELoss(float(model.config.target_std))
    return nn.CrossEntropyLoss()


class ScaledMSELoss(nn.Module):
    """MSE in units of the target's standard deviation, so the learning rate is scale-free."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return torch.mean(((prediction - target) / self.scale) ** 2)


def run(env: TrainingEnv, hp: Hyperparameters) -> list[dict[str, float]]:
    """Train ``hp.task`` on the environment's channels; rank 0 writes the model. Returns the history."""
    task = get_task(hp.task)
    seed_everything(hp.seed)
    device = distributed.select_device(env)
    distributed.init_distributed(env, device)
    try:
        train_records = data.read_split(task, "train", _channel(env, "train"))
        validation_records = data.read_split(task, "validation", _channel(env, "validation"))
        model = build(task.model_name, data.model_config_for(task, train_records))
        trainer = make_trainer(
            env,
            hp,
            task,
            model,
            train_records=train_records,
            validation_records=validation_records,
            device=device,
        )
        history = trainer.fit(on_epoch_end=_fault_hook())
        if env.is_main_process:
            _write_outputs(env, hp, task, model, history)
            # The drift monitor compares captured traffic with these statistics of the training data.
            confidences = validation_confidences(model, [r.features for r in validation_records])
            features = [r.features for r in train_records]
            write_baseline(env.model_dir, features, confidences, task.feature_names or None)
            write_input_schema(env.model_dir, task, model)
        distributed.barrier(env)  # no rank exits (and tears the group down) before rank 0 is done
        return history
    finally:
        distributed.shutdown(env)


def make_trainer(
    env: TrainingEnv,
    hp: Hyperparameters,
    task: TaskSpec,
    model: TaskModel,
    *,
    train_records: list[Record],
    validation_records: list[Record],
    device: torch.device,
) -> Trainer:
    """The Trainer for ``task`` as the job runs it (data loaders, DDP wrapping, optimizer, loss)."""
    collate = data.collate_for(task, model)
    train_loader = data.train_loader(
        data.to_dataset(task, train_records, model),
        batch_size=hp.batch_size,
        seed=hp.seed,
        collate=collate,
        num_workers=hp.num_workers,
        pin_memory=device.type == "cuda",
        distributed=env.is_distributed,
    )
    validation_set = data.to_dataset(task, validation_records, model)
    validation_loader = data.eval_loader(validation_set, hp.batch_size, collate)
    model.to(device)
    wrapped: nn.Module = model
    if env.is_distributed:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    config = TrainerConfig(
        epochs=hp.epochs,
        checkpoint_dir=env.paths.checkpoint_dir,
        checkpoint_every=hp.checkpoint_every,
        keep_checkpoints=hp.keep_checkpoints,
        use_amp=hp.amp,
        is_main_process=env.is_main_process,
    )
    return Trainer(
        wrapped,
        optimizer,
        train_loader,
        validation_loader,
        loss_function(task, model),
        task_kind=task.kind,
        device=device,
        config=config,
        run_config={"hyperparameters": hp.as_strings(), "model": task.model_name},
        log=lambda line: print(line, flush=True),
    )


def _channel(env: TrainingEnv, name: str) -> Path:
    if name not in env.channels:
        raise FileNotFoundError(f"missing input channel {name!r}; got {sorted(env.channels)}")
    return env.channels[name]


def _write_outputs(
    env: TrainingEnv, hp: Hyperparameters, task: TaskSpec, model: TaskModel, history: list[dict[str, float]]
) -> None:
    save_model(model.cpu(), env.model_dir)
    write_serving_code(env.model_dir)  # SageMaker's model.tar.gz of this folder serves as is
    (env.model_dir / HISTORY_FILE).write_text(json.dumps({"epochs": history}, indent=2) + "\n")
    metadata = {
        "task": task.name,
        "model": task.model_name,
        "hyperparameters": hp.as_strings(),
        "dataset_version": _dataset_version(env),
        "world_size": env.world_size,
    }
    (env.model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _dataset_version(env: TrainingEnv) -> str | None:
    """From a ``manifest`` channel, or the manifest beside the train split (local layout)."""
    candidates = [env.channels[c] / MANIFEST_FILE for c in ("manifest", "train") if c in env.channels]
    candidates.append(env.channels["train"].parent / MANIFEST_FILE)
    for path in candidates:
        if path.is_file():
            version = json.loads(path.read_text()).get("dataset_version")
            return str(version) if version else None
    return None


def _fault_hook() -> EpochCallback | None:
    stop_after = os.environ.get(FAULT_EXIT_ENV)
    if not stop_after:
        return None

    def exit_hard(epoch: int, _metrics: dict[str, float]) -> None:
        if epoch == int(stop_after):
            os._exit(FAULT_EXIT_CODE)  # like SIGKILL: no cleanup, no failure file

    return exit_hard


def write_failure(env: TrainingEnv, reason: str) -> None:
    """SageMaker shows this file's text as the job's FailureReason (only rank 0 writes it)."""
    if env.is_main_process:
        env.paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        env.paths.failure_file.write_text(reason + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    env = TrainingEnv.from_environ()
    try:
        raw = {**env.hyperparameters(), **parse_cli(sys.argv[1:] if argv is None else argv)}
        run(env, parse_hyperparameters(raw))
    except HyperparameterError as exc:
        write_failure(env, f"HyperparameterError: {exc}")
        print(f"HyperparameterError: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        write_failure(env, f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
