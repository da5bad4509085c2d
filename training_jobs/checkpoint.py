"""Checkpoints that survive a spot interruption: written atomically, resumed automatically.

SageMaker syncs ``/opt/ml/checkpoints`` to S3 and restores it on the next start. A process
killed mid-write leaves a temp file, never a truncated ``checkpoint-*.pt``; should a
checkpoint still be unreadable, resume falls back to the previous one.

Each checkpoint records the identity of the run that wrote it (task, model, the hyperparameters
that shape the weights); a checkpoint of another run is never resumed silently.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

PATTERN = "checkpoint-*.pt"
REQUIRED_KEYS = frozenset({"epoch", "step", "model", "optimizer", "rng", "config"})
IDENTITY_KEY = "identity"
# A reason stays one readable line however much differs (another task differs in everything).
MAX_LISTED_DIFFERENCES = 6
MAX_SHOWN_VALUE_CHARS = 40
_ABSENT = object()


class CheckpointMismatchError(ValueError):
    """The checkpoint to resume was written by another run, or records no run at all."""


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
    return next((state for _, state in _complete_checkpoints(directory)), None)


def load_latest_checkpoint_of_run(
    directory: Path, identity: Mapping[str, Any], log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The newest checkpoint of the run ``identity`` names; other runs' ones are deleted on the way.

    Deleted, not skipped: left in place, a stale checkpoint with a higher epoch number would
    outrank this run's (pruning and resume both go by the number).
    """
    for path, state in _complete_checkpoints(directory):
        reason = identity_mismatch(state, identity)
        if reason is None:
            return state
        path.unlink(missing_ok=True)
        log(f"deleted {path.name}: {reason}")
    return None


def identity_mismatch(state: Mapping[str, Any], identity: Mapping[str, Any]) -> str | None:
    """Why ``state`` is not a checkpoint of the run ``identity`` names (one line), or None if it is."""
    which = f"the checkpoint of epoch {state.get('epoch')}"
    saved = state.get(IDENTITY_KEY)
    if not isinstance(saved, Mapping):
        return f"{which} carries no run identity (written before checkpoints recorded their run)"
    keys = dict.fromkeys([*identity, *saved])
    differing = [k for k in keys if saved.get(k, _ABSENT) != identity.get(k, _ABSENT)]
    if not differing:
        return None
    listed = [
        f"{key} {_shown(saved.get(key, _ABSENT))} in the checkpoint, {_shown(identity.get(key, _ABSENT))} "
        "in this run"
        for key in differing[:MAX_LISTED_DIFFERENCES]
    ]
    unlisted = len(differing) - len(listed)
    more = f"; {unlisted} more key(s) differ" if unlisted else ""
    return f"{which} belongs to another run: {'; '.join(listed)}{more}"


def check_identity(state: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    """Raise ``CheckpointMismatchError`` unless ``state`` was written by the run ``identity`` names."""
    reason = identity_mismatch(state, identity)
    if reason is not None:
        raise CheckpointMismatchError(reason)


def _complete_checkpoints(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Newest first, every checkpoint that loads and has every required key."""
    for path in sorted(directory.glob(PATTERN), reverse=True):
        try:
            # weights_only: a checkpoint restored from S3 is data, never code to run.
            state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file means "try the previous one"
            print(f"skipping unreadable checkpoint {path.name}: {exc}", file=sys.stderr)
            continue
        if REQUIRED_KEYS <= state.keys():
            yield path, state
        else:
            print(f"skipping incomplete checkpoint {path.name}", file=sys.stderr)


def _shown(value: Any) -> str:
    text = "(none)" if value is _ABSENT else repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE_CHARS else text[: MAX_SHOWN_VALUE_CHARS - 3] + "..."


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
