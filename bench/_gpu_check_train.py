"""The torch half of ``bench/gpu_check.py``: environment facts and training runs in this process.

Imported only once the driver has found torch, numpy and scikit-learn importable, so the driver
can still write a report on a machine that lacks them. Each training run builds the Trainer the
way the training job does (``bench.train_throughput.setup`` -> ``train.make_trainer``), on the
device ``training_jobs.distributed.select_device`` picks, and records what really ran: where the
parameters live, the dtype and device of the model's outputs inside ``Trainer.train_epoch``
(a forward hook), whether autocast and the gradient scaler were on, and the epoch losses.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from pathlib import Path
from typing import Any

import torch

from bench.train_throughput import prepared, setup
from training_jobs import prepare
from training_jobs.distributed import select_device
from training_jobs.hyperparameters import Hyperparameters
from training_jobs.sm_env import TrainingEnv, TrainingPaths
from training_jobs.tasks import TaskSpec

__all__ = [
    "checkpoint_locations",
    "cpu_device",
    "cuda_device",
    "prepared",
    "prepared_from_raw",
    "torch_environment",
    "train_run",
]

# What the driver reports about mixed precision, read from the code rather than assumed.
AMP_FLAG = "hyperparameter `amp` (Hyperparameters.amp, default {default}) -> TrainerConfig.use_amp"
AMP_RULE = (
    "Trainer: use_amp = config.use_amp and device.type == 'cuda'; forward + loss under "
    "torch.autocast(device.type) (default dtype {dtype}), backward through torch.amp.GradScaler"
)


def amp_description() -> dict[str, str]:
    return {
        "flag": AMP_FLAG.format(default=str(Hyperparameters.amp).lower()),
        "rule": AMP_RULE.format(dtype=_autocast_dtype("cuda")),
        "cpu": "ignored on CPU (the Trainer never enables autocast there)",
    }


def torch_environment() -> dict[str, Any]:
    """Torch and CUDA facts of this process (no GPU work beyond querying properties)."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
        "amp": amp_description(),
    }
    if not torch.cuda.is_available():
        return info
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    info.update(
        device_count=torch.cuda.device_count(),
        device_name=torch.cuda.get_device_name(index),
        capability=".".join(str(v) for v in torch.cuda.get_device_capability(index)),
        total_memory_gib=round(props.total_memory / 2**30, 1),
        bf16_supported=torch.cuda.is_bf16_supported(),
        cudnn=torch.backends.cudnn.version(),
    )
    return info


def cuda_device() -> torch.device:
    """The device the training job would pick here (``select_device`` for local rank 0)."""
    unused = Path()  # select_device reads only the local rank
    env = TrainingEnv(paths=TrainingPaths(unused), model_dir=unused, output_data_dir=unused)
    return select_device(env)


def prepared_from_raw(task: str, raw_dir: Path, root: Path) -> Path:
    """The processed splits of ``task`` from raw files written beforehand (``raw_dir/<task>/``),
    for a machine without scikit-learn; the same ``prepare`` step as ``prepared``."""
    prepare.prepare(task, raw_dir / task, root / "processed")
    return root / "processed"


def cpu_device() -> torch.device:
    return torch.device("cpu")


def train_run(
    task: TaskSpec, splits: Path, work: Path, *, device: torch.device, amp: bool, epochs: int, deadline: float
) -> dict[str, Any]:
    """Train a fresh model ``epochs`` epochs (the first one a warm-up, timed apart) and validate.

    Epochs stop early once ``time.monotonic()`` passes ``deadline`` (``truncated`` in the result).
    Raises ``RuntimeError`` if the model or its outputs are not on ``device``.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        trainer, model, dataset, batch_size = setup(
            task, splits, work, device=device, hyperparameters={"amp": str(amp).lower()}
        )
    parameter = next(model.parameters())
    if parameter.device.type != device.type:
        raise RuntimeError(f"model parameters are on {parameter.device}, expected {device}")
    outputs: set[str] = set()

    def record_output(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs.add(f"{_dtype_name(output.dtype)}@{output.device}")

    samples = len(dataset)  # type: ignore[arg-type]
    hook = model.register_forward_hook(record_output)
    try:
        started = time.perf_counter()
        losses = [trainer.train_epoch(1)]  # warm-up: CUDA context, cuDNN autotune, first allocations
        warmup_s = time.perf_counter() - started
    finally:
        hook.remove()
    truncated = False
    started = time.perf_counter()
    for epoch in range(2, epochs + 1):
        if time.monotonic() > deadline:
            truncated = True
            break
        losses.append(trainer.train_epoch(epoch))
    _synchronize(device)
    timed_s = time.perf_counter() - started
    timed_epochs = len(losses) - 1
    validation = trainer.validate()
    value = validation.get(f"validation_{task.quality_metric}", float("nan"))
    finite = all(math.isfinite(v) for v in [*losses, validation["validation_loss"]])
    devices = {entry.split("@", 1)[1].split(":")[0] for entry in outputs}
    if devices != {device.type}:
        raise RuntimeError(f"model outputs were on {sorted(devices)} during training, expected {device}")
    return {
        "device": str(device),
        "amp_requested": amp,
        "amp_active": trainer.use_amp,
        "autocast_dtype": _autocast_dtype(device.type) if trainer.use_amp else None,
        "grad_scaler_enabled": trainer.scaler.is_enabled(),
        "grad_scale_final": float(trainer.scaler.get_scale()) if trainer.scaler.is_enabled() else None,
        "parameter_device": str(parameter.device),
        "parameter_dtype": _dtype_name(parameter.dtype),
        "train_forward_outputs": sorted(outputs),
        "batch_size": batch_size,
        "train_samples": samples,
        "epochs_run": len(losses),
        "warmup_epoch_s": round(warmup_s, 4),
        "timed_epochs": timed_epochs,
        "timed_s": round(timed_s, 4),
        "samples_per_s": round(samples * timed_epochs / timed_s, 1) if timed_epochs and timed_s > 0 else None,
        "train_loss": [round(v, 6) for v in losses],
        "loss_finite": finite,
        "validation": {k: round(v, 6) for k, v in validation.items()},
        "quality_metric": task.quality_metric,
        "quality_value": round(value, 6),
        "quality_threshold": task.quality_threshold,
        "meets_threshold": value >= task.quality_threshold,
        "truncated": truncated,
    }


def checkpoint_locations(checkpoint_dir: Path) -> dict[str, Any]:
    """Where the newest checkpoint's model weights lived when saved (``cuda:0``, ``cpu``): the
    device the training job really trained on, read back without moving anything to a GPU."""
    found = sorted(checkpoint_dir.glob("checkpoint-*.pt"))
    if not found:
        return {"checkpoint": None, "weight_locations": [], "weight_dtypes": []}
    saved_on: dict[int, str] = {}  # storage address after loading -> location when saved

    def keep_on_cpu(storage: Any, location: str) -> Any:
        saved_on[storage.data_ptr()] = location
        return storage

    state = torch.load(found[-1], map_location=keep_on_cpu, weights_only=True)
    weights = [t for t in state.get("model", {}).values() if isinstance(t, torch.Tensor)]
    return {
        "checkpoint": found[-1].name,
        "weight_locations": sorted({saved_on.get(t.untyped_storage().data_ptr(), "?") for t in weights}),
        "weight_dtypes": sorted({_dtype_name(t.dtype) for t in weights}),
        "all_locations": sorted(set(saved_on.values())),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast_dtype(device_type: str) -> str:
    getter = getattr(torch, "get_autocast_dtype", None)  # torch >= 2.4
    if getter is not None:
        return _dtype_name(getter(device_type))
    return _dtype_name(torch.get_autocast_gpu_dtype()) if device_type == "cuda" else "?"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
