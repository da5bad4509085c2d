"""The training job: SageMaker's training-container contract around the ``Trainer``.

Run as ``python -m training_jobs.train [--name value ...]`` (one process), as script mode runs
an entry point (``python train.py --name value ...``, a shim calling ``main``), or under
``torchrun --nproc_per_node N -m training_jobs.train`` (DistributedDataParallel); ``--help``
lists every hyperparameter. Paths come from ``sm_env`` (``/opt/ml`` in SageMaker,
``MLP_SM_ROOT`` locally): hyperparameters from ``input/config/hyperparameters.json`` or
``SM_HPS`` (CLI arguments win), data from the ``train`` and ``validation`` channels, the model
to ``SM_MODEL_DIR``, checkpoints to ``<root>/checkpoints`` (resumed automatically when they
belong to this run), and on any error the reason to ``<root>/output/failure`` and a non-zero
exit code: 2 for a hyperparameter or a checkpoint of another run, 1 for anything else.
"""

from __future__ import annotations

import json
import os
import random
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from models import REGRESSION, TaskModel, build, save_model

from . import data, distributed, sm_env
from .baselines import validation_confidences, write_baseline
from .checkpoint import CheckpointMismatchError
from .hyperparameters import (
    RESTART,
    HyperparameterError,
    Hyperparameters,
    parse_cli,
    parse_hyperparameters,
)
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
USAGE_ERROR_EXIT_CODE = 2  # the job's configuration is wrong: retrying the same job cannot help
RESTART_HINT = (
    f"to delete its checkpoints and train from scratch, set on_checkpoint_mismatch={RESTART} "
    f"(--on-checkpoint-mismatch {RESTART})"
)
_TRAIN, _VALIDATION = (f"${sm_env.SM_CHANNEL_PREFIX}{name}" for name in ("TRAIN", "VALIDATION"))
CONTRACT = "\n".join(
    [
        "SageMaker training-container contract (the same locally):",
        f"  root             {sm_env.DEFAULT_ROOT} in SageMaker; locally ${sm_env.ROOT_ENV} moves the tree"
        " into a folder",
        f"  hyperparameters  <root>/input/config/hyperparameters.json, else ${sm_env.SM_HPS} (strings);",
        "                   --name value arguments win; sagemaker_* keys are SageMaker's, ignored",
        f"  data             the train and validation channels: {_TRAIN}, {_VALIDATION},",
        "                   else <root>/input/data/<channel>",
        f"  model            written to ${sm_env.SM_MODEL_DIR} (default <root>/model)",
        f"  checkpoints      <root>/{sm_env.CHECKPOINTS} ({sm_env.CONTAINER_CHECKPOINT_DIR} in SageMaker,"
        " synced with S3);",
        "                   the newest resumes the run that wrote it, see --on-checkpoint-mismatch",
        "  failure          the reason in <root>/output/failure (the job's FailureReason); exit code",
        "                   2 for a hyperparameter or a checkpoint of another run, 1 for other errors",
        "  distributed      torchrun --nproc_per_node N -m training_jobs.train ... (rank 0 writes)",
        "",
    ]
)


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
        run_identity=run_identity(hp, task, model),
        restart_on_mismatch=hp.on_checkpoint_mismatch == RESTART,
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


def run_identity(hp: Hyperparameters, task: TaskSpec, model: TaskModel) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: task, model, its config and the shaping hyperparameters.

    The model config counts because it comes from the data (vocabulary, feature statistics):
    weights trained on other statistics would load but mean something else.
    """
    model_config = {f"model_config.{key}": value for key, value in asdict(model.config).items()}
    return {"task": task.name, "model": task.model_name, **hp.identity(), **model_config}


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
    if not env.is_main_process:
        return
    try:
        env.paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        env.paths.failure_file.write_text(reason + "\n")
    except OSError:
        pass  # run by hand outside a container (no writable /opt/ml): stderr has the reason


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job from the command line (``argv`` defaults to ``sys.argv[1:]``); the exit code."""
    env = TrainingEnv.from_environ()
    try:
        cli = parse_cli(sys.argv[1:] if argv is None else argv, epilog=CONTRACT)
        if cli.help_text is not None:
            print(cli.help_text, end="")
            return 0
        run(env, parse_hyperparameters({**env.hyperparameters(), **cli.hyperparameters}))
    except HyperparameterError as exc:
        return _usage_error(env, f"HyperparameterError: {exc}")
    except CheckpointMismatchError as exc:
        return _usage_error(env, f"CheckpointMismatchError: {exc}; {RESTART_HINT}")
    except Exception as exc:
        write_failure(env, f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    return 0


def _usage_error(env: TrainingEnv, reason: str) -> int:
    """A mistake in the job's configuration: one line, no traceback."""
    write_failure(env, reason)
    print(reason, file=sys.stderr)
    return USAGE_ERROR_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
