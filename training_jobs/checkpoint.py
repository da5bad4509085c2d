"""Checkpoints that survive a spot interruption: written atomically, resumed automatically.

SageMaker syncs ``/opt/ml/checkpoints`` to S3 and restores it on the next start. A process
killed mid-write leaves a temp file, never a truncated ``checkpoint-*.pt``; should a
checkpoint still be unreadable, resume falls back to the previous one.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

PATTERN = "checkpoint-*.pt"
REQUIRED_KEYS = frozenset({"epoch", "step", "model", "optimizer", "rng", "config"})


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return directory / f"checkpoint-{epoch:05d}.pt"


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as epoch ``epoch``'s checkpoint (temp file + fsync + rename); keep the newest."""
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, epoch)
    temp = directory / f".{final.name}.{os.getpid()}.tmp"
    with temp.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(final)
    _fsync_directory(directory)
    for old in sorted(directory.glob(PATTERN))[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The newest checkpoint that loads and has every required key, else None."""
    for path in sorted(directory.glob(PATTERN), reverse=True):
        try:
            # weights_only: a checkpoint restored from S3 is data, never code to run.
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file means "try the previous one"
            print(f"skipping unreadable checkpoint {path.name}: {exc}", file=sys.stderr)
            continue
        if REQUIRED_KEYS <= state.keys():
            return state
        print(f"skipping incomplete checkpoint {path.name}", file=sys.stderr)
    return None


def capture_rng_state() -> dict[str, Any]:
    """torch, numpy and Python RNG states, as plain values that ``weights_only`` loading accepts."""
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)  # legacy=True always returns the MT19937 tuple
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, keys.tolist(), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
