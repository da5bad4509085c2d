"""The training loop: epochs of steps, validation, one metric line per epoch, checkpoints.

The ``Trainer`` receives everything it works on (model, data, optimizer, loss), so the same
loop serves the training job, the tests and the throughput benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from models import REGRESSION

from . import checkpoint
from .data import Batch, BatchSource, set_loader_epoch
from .distributed import all_reduce_sum, broadcast_from_main
from .metrics import format_metric_line

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    use_amp: bool = False
    is_main_process: bool = True  # only rank 0 prints metrics and writes checkpoints
    # Written into each checkpoint; resume refuses a checkpoint with another one. None (library
    # use: tests, benchmarks) records nothing and resumes any checkpoint.
    run_identity: Mapping[str, Any] | None = None
    # True: delete other runs' checkpoints and train from scratch instead of refusing.
    restart_on_mismatch: bool = False


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: BatchSource,
        validation_loader: DataLoader[Any],
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        *,
        task_kind: str,
        device: torch.device,
        config: TrainerConfig,
        run_config: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.validation_loader = validation_loader
        self.loss_fn = loss_fn
        self.task_kind = task_kind
        self.device = device
        self.config = config
        self.run_config = run_config or {}
        self.log = log
        # AMP only on CUDA: CPU autocast (bfloat16) is slower than float32 for these small models.
        self.use_amp = config.use_amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.use_amp)
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, float]] = []

    def fit(self, on_epoch_end: EpochCallback | None = None) -> list[dict[str, float]]:
        """Train from the latest valid checkpoint (if any) to ``config.epochs``; returns the history."""
        self.resume()
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            metrics = {"train_loss": self.train_epoch(epoch), **self.validate()}
            self.epoch = epoch
            self.history.append({"epoch": float(epoch), **metrics})
            if self.config.is_main_process:
                self.log(format_metric_line(epoch, metrics))
            if epoch % self.config.checkpoint_every == 0 or epoch == self.config.epochs:
                self.save_checkpoint()
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
        return self.history

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training data; returns the mean loss over all ranks' samples."""
        self.model.train()
        set_loader_epoch(self.train_loader, epoch)
        # Losses stay on the device (no per-step .item() sync) and are weighted once per epoch.
        losses: list[Tensor] = []
        sizes: list[int] = []
        for batch in self.train_loader:
            *inputs, targets = self._to_device(batch)
            self.optimizer.zero_grad(set_to_none=True)
            if self.use_amp:
                with torch.autocast(self.device.type):
                    loss = self.loss_fn(self.model(*inputs), targets)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss = self.loss_fn(self.model(*inputs), targets)
                loss.backward()
                self.optimizer.step()
            self.step += 1
            losses.append(loss.detach())
            sizes.append(len(targets))
        weights = torch.tensor(sizes, dtype=torch.float64, device=self.device)
        loss_sum = (torch.stack(losses).double() * weights).sum() if losses else weights.sum()
        totals = all_reduce_sum(torch.stack([loss_sum, weights.sum()]))
        return float(totals[0] / totals[1].clamp_min(1.0))

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Loss and the task's quality metric on the whole validation split."""
        self.model.eval()
        outputs, targets = [], []
        for batch in self.validation_loader:
            *inputs, target = self._to_device(batch)
            outputs.append(self.model(*inputs).float())
            targets.append(target)
        output, target = torch.cat(outputs), torch.cat(targets)
        metrics = {"validation_loss": float(self.loss_fn(output, target))}
        if self.task_kind == REGRESSION:
            metrics["validation_rmse"] = math.sqrt(float(torch.mean((output - target) ** 2)))
            total = float(torch.sum((target - target.mean()) ** 2))
            metrics["validation_r2"] = 1.0 - float(torch.sum((output - target) ** 2)) / max(total, 1e-12)
        else:
            metrics["validation_accuracy"] = float((output.argmax(dim=1) == target).float().mean())
        return metrics

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        identity = self.config.run_identity
        return {
            **({checkpoint.IDENTITY_KEY: dict(identity)} if identity is not None else {}),
            "epoch": self.epoch,
            "step": self.step,
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "config": self.run_config,
            "rng": checkpoint.capture_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history", []))
        checkpoint.restore_rng_state(state["rng"])

    def save_checkpoint(self) -> None:
        if self.config.checkpoint_dir is not None and self.config.is_main_process:
            checkpoint.save_checkpoint(
                self.config.checkpoint_dir, self.epoch, self.state_dict(), self.config.keep_checkpoints
            )

    def resume(self) -> bool:
        """Load the latest valid checkpoint (rank 0 reads it, every rank gets the same state).

        Raises ``CheckpointMismatchError`` (on every rank alike) when that checkpoint belongs to
        another run, unless ``config.restart_on_mismatch`` is set.
        """
        if self.config.checkpoint_dir is None:
            return False
        found = self._latest_checkpoint(self.config.checkpoint_dir) if self.config.is_main_process else None
        state = broadcast_from_main(found)
        if not isinstance(state, dict):
            return False
        if self.config.run_identity is not None:
            checkpoint.check_identity(state, self.config.run_identity)  # before any weight is touched
        self.load_state_dict(state)
        if self.config.is_main_process:
            self.log(f"resumed from checkpoint at epoch {self.epoch} (step {self.step})")
        return True

    def _latest_checkpoint(self, directory: Path) -> dict[str, Any] | None:
        identity = self.config.run_identity
        if identity is not None and self.config.restart_on_mismatch:
            return checkpoint.load_latest_checkpoint_of_run(directory, identity, self.log)
        return checkpoint.load_latest_checkpoint(directory)

    def _to_device(self, batch: Batch) -> list[Tensor]:
        if self.device.type == "cpu":
            return list(batch)
        return [t.to(self.device, non_blocking=True) for t in batch]


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, nn.Module) else model
