"""Device choice and torchrun process groups (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .sm_env import TrainingEnv


def select_device(env: TrainingEnv) -> torch.device:
    """CUDA when present (one GPU per local rank under torchrun), else CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def init_distributed(env: TrainingEnv, device: torch.device) -> None:
    """Join torchrun's process group (rendezvous from MASTER_ADDR/PORT in the environment)."""
    if env.is_distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def barrier(env: TrainingEnv) -> None:
    if env.is_distributed and dist.is_initialized():
        dist.barrier()


def shutdown(env: TrainingEnv) -> None:
    if env.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum across ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_from_main(value: object) -> object:
    """Rank 0's ``value`` on every rank (identity when not distributed).

    Only rank 0 writes checkpoints, and on a multi-instance job only its host has them: the
    others must take the resumed state from rank 0 rather than from their own empty folders.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
