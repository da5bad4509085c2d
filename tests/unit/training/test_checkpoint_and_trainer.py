"""Checkpoints: atomic, pruned, resumable, RNG-faithful; the Trainer's rank-0 gate."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from training_jobs import checkpoint
from training_jobs.trainer import Trainer, TrainerConfig


def tiny_trainer(checkpoint_dir, *, is_main_process=True, epochs=2, lines=None, **config):
    """A linear classifier on 32 random rows; ``config`` adds TrainerConfig settings (run identity...)."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    model = nn.Linear(4, 2)
    return Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(data, batch_size=8, shuffle=True),
        DataLoader(data, batch_size=8),
        nn.CrossEntropyLoss(),
        task_kind="classification",
        device=torch.device("cpu"),
        config=TrainerConfig(
            epochs=epochs, checkpoint_dir=checkpoint_dir, is_main_process=is_main_process, **config
        ),
        log=(lines.append if lines is not None else print),
    )


def test_rng_state_round_trips_for_torch_numpy_and_python():
    # GIVEN captured RNG states
    state = checkpoint.capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    # WHEN the generators move on and the state is restored
    checkpoint.restore_rng_state(state)
    # THEN every generator repeats the same draws
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_only_newest_checkpoints_are_kept_and_no_temp_files_remain(tmp_path):
    # GIVEN four saves with keep=2
    for epoch in range(1, 5):
        checkpoint.save_checkpoint(tmp_path, epoch, {"epoch": epoch}, keep=2)
    # THEN the two newest remain and nothing half-written is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00003.pt", "checkpoint-00004.pt"]


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path):
    # GIVEN a valid epoch-1 checkpoint and a truncated epoch-2 one
    trainer = tiny_trainer(tmp_path, epochs=1)
    trainer.fit()
    checkpoint.checkpoint_path(tmp_path, 2).write_bytes(b"PK\x03\x04 truncated")
    # WHEN the latest valid checkpoint is loaded
    state = checkpoint.load_latest_checkpoint(tmp_path)
    # THEN it is epoch 1's
    assert state is not None
    assert state["epoch"] == 1


def test_trainer_resumes_where_the_checkpoint_left_off(tmp_path):
    # GIVEN a trainer that finished 1 of 2 epochs
    tiny_trainer(tmp_path, epochs=1).fit()
    # WHEN a new trainer with 2 epochs starts on the same folder
    lines: list[str] = []
    history = tiny_trainer(tmp_path, epochs=2, lines=lines).fit()
    # THEN it only trains epoch 2, keeping epoch 1 in the history
    assert [int(h["epoch"]) for h in history] == [1, 2]
    assert [line.split()[1] for line in lines if line.startswith("[metric]")] == ["epoch=2"]


def test_non_main_rank_writes_no_checkpoint_and_prints_no_metrics(tmp_path):
    # GIVEN a trainer on a non-zero rank
    lines: list[str] = []
    trainer = tiny_trainer(tmp_path / "ckpt", is_main_process=False, lines=lines)
    # WHEN it trains
    trainer.fit()
    # THEN it wrote nothing and printed nothing
    assert not (tmp_path / "ckpt").exists()
    assert lines == []
