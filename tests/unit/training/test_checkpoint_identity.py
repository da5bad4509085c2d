"""A checkpoint resumes only the run that wrote it: refused with the reason, or deleted on restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from training_jobs import checkpoint
from training_jobs.hyperparameters import parse_hyperparameters
from training_jobs.trainer import Trainer

from .test_checkpoint_and_trainer import tiny_trainer
from .test_train_job import run_train

RUN = {"task": "toy", "learning_rate": 0.1, "seed": 0}
TIMEOUT_S = 120


def toy_trainer(
    checkpoint_dir: Path,
    identity: dict[str, Any] | None,
    *,
    epochs: int = 1,
    restart: bool = False,
    lines: list[str] | None = None,
) -> Trainer:
    trainer: Trainer = tiny_trainer(
        checkpoint_dir, epochs=epochs, lines=lines, run_identity=identity, restart_on_mismatch=restart
    )
    return trainer


def metric_epochs(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith("[metric]")]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# -- the Trainer ------------------------------------------------------------------------------


def test_each_checkpoint_records_the_run_identity(tmp_path):
    toy_trainer(tmp_path, RUN).fit()
    state = checkpoint.load_latest_checkpoint(tmp_path)
    assert state is not None
    assert state[checkpoint.IDENTITY_KEY] == RUN


def test_same_run_with_more_epochs_resumes(tmp_path):
    # GIVEN a run that finished 1 of 2 epochs
    toy_trainer(tmp_path, RUN, epochs=1).fit()
    # WHEN the same run starts again asking for 2 epochs
    lines: list[str] = []
    history = toy_trainer(tmp_path, dict(RUN), epochs=2, lines=lines).fit()
    # THEN it resumes and trains epoch 2 only
    assert "resumed from checkpoint at epoch 1 (step 4)" in lines
    assert metric_epochs(lines) == ["epoch=2"]
    assert [int(h["epoch"]) for h in history] == [1, 2]


@pytest.mark.parametrize(
    ("other", "named"),
    [
        ({**RUN, "learning_rate": 0.5}, ["learning_rate 0.1 in the checkpoint, 0.5 in this run"]),
        ({**RUN, "task": "other"}, ["task 'toy' in the checkpoint, 'other' in this run"]),
        ({**RUN, "batch_size": 8}, ["batch_size (none) in the checkpoint, 8 in this run"]),
        ({"task": "toy"}, ["learning_rate 0.1 in the checkpoint, (none) in this run", "seed 0"]),
    ],
)
def test_checkpoint_of_another_run_is_refused_naming_each_difference(tmp_path, other, named):
    # GIVEN a checkpoint written by one run
    toy_trainer(tmp_path, RUN, epochs=1).fit()
    before = snapshot(tmp_path)
    # WHEN a run with another identity starts on the same folder
    trainer = toy_trainer(tmp_path, other, epochs=3)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(checkpoint.CheckpointMismatchError) as caught:
        trainer.fit()
    # THEN the one-line reason names each differing key with both values
    reason = str(caught.value)
    assert reason.startswith("the checkpoint of epoch 1 belongs to another run: ")
    assert all(part in reason for part in named)
    assert "\n" not in reason
    # ...and nothing was loaded, trained or written
    assert all(torch.equal(v, initial[k]) for k, v in trainer.model.state_dict().items())
    assert trainer.epoch == 0
    assert snapshot(tmp_path) == before


def test_checkpoint_without_identity_is_refused_as_such(tmp_path):
    # GIVEN a checkpoint written before checkpoints recorded their run
    toy_trainer(tmp_path, None).fit()
    # WHEN a run with an identity starts on it THEN it is refused, saying why
    with pytest.raises(checkpoint.CheckpointMismatchError, match="carries no run identity"):
        toy_trainer(tmp_path, RUN, epochs=2).fit()


@pytest.mark.parametrize(
    "stale_identity", [{**RUN, "learning_rate": 0.5}, None], ids=["other-run", "no-identity"]
)
def test_restart_deletes_the_other_runs_checkpoints_and_trains_from_scratch(tmp_path, stale_identity):
    # GIVEN two checkpoints of another run (or of a run that recorded none)
    toy_trainer(tmp_path, stale_identity, epochs=2).fit()
    # WHEN this run starts with restart chosen
    lines: list[str] = []
    history = toy_trainer(tmp_path, RUN, epochs=1, restart=True, lines=lines).fit()
    # THEN it trains from epoch 1, says what it deleted, and only its own checkpoint remains
    assert metric_epochs(lines) == ["epoch=1"]
    assert [int(h["epoch"]) for h in history] == [1]
    assert not any(line.startswith("resumed") for line in lines)
    assert sum(line.startswith("deleted checkpoint-0000") for line in lines) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00001.pt"]
    state = checkpoint.load_latest_checkpoint(tmp_path)
    assert state is not None
    assert state[checkpoint.IDENTITY_KEY] == RUN


def test_restart_resumes_this_runs_checkpoint_below_a_newer_stale_one(tmp_path):
    # GIVEN this run's epoch-1 checkpoint and another run's epoch-5 one restored beside it
    toy_trainer(tmp_path, RUN, epochs=1).fit()
    stale = checkpoint.load_latest_checkpoint(tmp_path)
    assert stale is not None
    checkpoint.save_checkpoint(tmp_path, 5, {**stale, "epoch": 5, "identity": {**RUN, "seed": 9}}, keep=5)
    # WHEN this run starts again with restart chosen, asking for 2 epochs
    lines: list[str] = []
    toy_trainer(tmp_path, RUN, epochs=2, restart=True, lines=lines).fit()
    # THEN the stale checkpoint is deleted and this run resumes from its own
    assert any(line.startswith("deleted checkpoint-00005.pt") and "seed 9" in line for line in lines)
    assert "resumed from checkpoint at epoch 1 (step 4)" in lines
    assert metric_epochs(lines) == ["epoch=2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00001.pt", "checkpoint-00002.pt"]


def test_a_reason_stays_one_short_line_however_much_differs():
    # GIVEN identities differing in many keys, one value long
    saved = {"epoch": 3, checkpoint.IDENTITY_KEY: {f"k{i}": i for i in range(10)} | {"vocab": "x" * 500}}
    current = {f"k{i}": -i - 1 for i in range(10)} | {"vocab": "y" * 500}
    # WHEN compared
    reason = checkpoint.identity_mismatch(saved, current)
    # THEN the first keys are listed, the rest counted, and no value floods the line
    assert reason is not None
    assert "k0 0 in the checkpoint, -1 in this run" in reason
    assert f"{11 - checkpoint.MAX_LISTED_DIFFERENCES} more key(s) differ" in reason
    assert len(reason) < 600


def test_hyperparameters_that_do_not_shape_the_weights_are_not_part_of_the_identity():
    # GIVEN two runs differing only in how long and how they checkpoint
    base = parse_hyperparameters({"task": "digits"})
    longer = parse_hyperparameters(
        {
            "task": "digits",
            "epochs": "40",
            "checkpoint_every": "5",
            "keep_checkpoints": "1",
            "num_workers": "2",
        }
    )
    # THEN they are the same run; another learning rate or seed is not
    assert longer.identity() == base.identity()
    assert parse_hyperparameters({"task": "digits", "learning_rate": "0.01"}).identity() != base.identity()
    assert parse_hyperparameters({"task": "digits", "seed": "1"}).identity() != base.identity()


# -- the training job, as SageMaker runs it -------------------------------------------------------


def job_epochs(done: subprocess.CompletedProcess[str]) -> list[str]:
    return metric_epochs(done.stdout.splitlines())


def test_job_refuses_a_checkpoint_of_another_learning_rate(prepared_splits, tmp_path):
    # GIVEN a finished diabetes run at learning rate 0.001 (model and checkpoints in its root)
    splits = prepared_splits("diabetes")
    first = run_train(tmp_path, splits, "--task", "diabetes", "--epochs", "1", "--learning-rate", "0.001")
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "checkpoints"), (tmp_path / "model/model.pt").read_bytes()
    # WHEN a run at 0.005 starts on the same checkpoint folder, asking for more epochs
    done = run_train(tmp_path, splits, "--task", "diabetes", "--epochs", "2", "--learning_rate=0.005")
    # THEN it exits 2 with one line naming learning_rate and both values, and how to start over
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("CheckpointMismatchError: ")
    assert "learning_rate 0.001 in the checkpoint, 0.005 in this run" in lines[0]
    assert "--on-checkpoint-mismatch restart" in lines[0]
    # ...SageMaker's FailureReason says the same
    assert (tmp_path / "output/failure").read_text().strip() == lines[0]
    # ...and nothing was trained or overwritten
    assert job_epochs(done) == []
    assert (snapshot(tmp_path / "checkpoints"), (tmp_path / "model/model.pt").read_bytes()) == before


def test_job_refuses_a_checkpoint_of_another_task_without_a_traceback(prepared_splits, tmp_path):
    # GIVEN a digits checkpoint
    digits = run_train(tmp_path, prepared_splits("digits"), "--task", "digits", "--epochs", "1")
    assert digits.returncode == 0, digits.stderr
    # WHEN a diabetes run starts on the same checkpoint folder
    done = run_train(tmp_path, prepared_splits("diabetes"), "--task", "diabetes", "--epochs", "1")
    # THEN it is refused in one line naming the task, never a load_state_dict error
    assert done.returncode == 2
    assert "task 'digits' in the checkpoint, 'diabetes' in this run" in done.stderr
    assert "model 'digits-cnn' in the checkpoint, 'tabular-mlp' in this run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert "state_dict" not in done.stderr
    assert job_epochs(done) == []


def test_job_with_restart_trains_fresh_and_then_resumes_its_own_checkpoints(prepared_splits, tmp_path):
    # GIVEN a checkpoint of a run at learning rate 0.001
    splits = prepared_splits("diabetes")
    old = run_train(tmp_path, splits, "--task", "diabetes", "--epochs", "2", "--learning_rate", "0.001")
    assert old.returncode == 0, old.stderr
    # WHEN a run at 0.005 starts with restart chosen
    args = ("--task", "diabetes", "--learning_rate", "0.005", "--on-checkpoint-mismatch", "restart")
    fresh = run_train(tmp_path, splits, *args, "--epochs", "1")
    # THEN it ignores the old checkpoints, trains from epoch 1 and records its own learning rate
    assert fresh.returncode == 0, fresh.stderr
    assert "resumed" not in fresh.stdout
    assert "deleted checkpoint-00002.pt: the checkpoint of epoch 2 belongs to another run" in fresh.stdout
    assert job_epochs(fresh) == ["epoch=1"]
    metadata = json.loads((tmp_path / "model/training_metadata.json").read_text())
    assert metadata["hyperparameters"]["learning_rate"] == "0.005"
    # AND a later start of the same run resumes from its own checkpoint (also without restart)
    again = run_train(tmp_path, splits, "--task", "diabetes", "--learning_rate", "0.005", "--epochs", "2")
    assert again.returncode == 0, again.stderr
    assert "resumed from checkpoint at epoch 1" in again.stdout
    assert job_epochs(again) == ["epoch=2"]
