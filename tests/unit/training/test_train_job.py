"""train.py as SageMaker runs it: subprocesses, kill-and-resume, torchrun, failure reporting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from training_jobs import evaluate
from training_jobs.train import FAULT_EXIT_CODE, FAULT_EXIT_ENV

from .conftest import REPO_ROOT, subprocess_env
from .test_quality import DIGITS_MIN_ACCURACY

EPOCHS = 4
TIMEOUT_S = 120


def run_train(root: Path, splits: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training_jobs.train", *args],
        env=subprocess_env(root, splits, **env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pt", weights_only=True)


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_run(prepared_splits, tmp_path):
    splits = prepared_splits("digits")
    args = ("--task", "digits", "--epochs", str(EPOCHS), "--seed", "7")
    # GIVEN a run that dies hard (like SIGKILL on a spot interruption) right after epoch 2's checkpoint
    killed = run_train(tmp_path / "spot", splits, *args, **{FAULT_EXIT_ENV: "2"})
    assert killed.returncode == FAULT_EXIT_CODE, killed.stderr
    assert sorted(p.name for p in (tmp_path / "spot/checkpoints").iterdir()) == [
        "checkpoint-00001.pt",
        "checkpoint-00002.pt",
    ]
    assert not (tmp_path / "spot/model/model.pt").exists()
    # WHEN the job starts again on the same checkpoint folder, and a reference run goes uninterrupted
    resumed = run_train(tmp_path / "spot", splits, *args)
    reference = run_train(tmp_path / "reference", splits, *args)
    # THEN the restart continues at epoch 3 and ends with the reference weights
    assert resumed.returncode == 0, resumed.stderr
    assert reference.returncode == 0, reference.stderr
    assert "resumed from checkpoint at epoch 2" in resumed.stdout
    assert [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("[metric]")] == [
        "epoch=3",
        "epoch=4",
    ]
    got, want = weights(tmp_path / "spot/model"), weights(tmp_path / "reference/model")
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=0, msg=name)
    # ...and the training curve spans all epochs, not just the resumed ones
    curve = json.loads((tmp_path / "spot/model/training_history.json").read_text())["epochs"]
    assert [int(p["epoch"]) for p in curve] == [1, 2, 3, 4]


def run_torchrun(root: Path, splits: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*command, "-m", "training_jobs.train", "--task", "digits", *args],
        env=subprocess_env(root, splits),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_torchrun_two_processes_train_to_single_process_quality(prepared_splits, tmp_path):
    splits = prepared_splits("digits")
    root = tmp_path / "ddp"
    # GIVEN two gloo worker processes on CPU under torchrun
    # WHEN the job runs
    done = run_torchrun(root, splits)
    # THEN it succeeds, reaches the single-process accuracy threshold on the test split...
    assert done.returncode == 0, done.stderr[-3000:]
    report = evaluate.evaluate(root / "model", splits / "test", tmp_path / "eval")
    assert report["metrics"]["accuracy"]["value"] >= DIGITS_MIN_ACCURACY
    metadata = json.loads((root / "model/training_metadata.json").read_text())
    assert metadata["world_size"] == 2
    # ...and only rank 0 reported and wrote: one metric line per epoch, one checkpoint series
    epochs = int(metadata["hyperparameters"]["epochs"])
    assert sum(line.startswith("[metric]") for line in done.stdout.splitlines()) == epochs
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == [
        f"checkpoint-{epochs - 1:05d}.pt",
        f"checkpoint-{epochs:05d}.pt",
    ]
    assert not (root / "output/failure").exists()
    # ...and a restart resumes both ranks from rank 0's checkpoint (no rank starts over)
    again = run_torchrun(root, splits, "--epochs", str(epochs + 1))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from checkpoint at epoch {epochs}" in again.stdout
    assert [line.split()[1] for line in again.stdout.splitlines() if line.startswith("[metric]")] == [
        f"epoch={epochs + 1}"
    ]


def test_failing_run_writes_failure_file_and_exits_nonzero(prepared_splits, tmp_path):
    splits = prepared_splits("digits")
    # GIVEN a job whose validation channel points at an empty folder
    empty = tmp_path / "empty"
    empty.mkdir()
    # WHEN it runs
    done = run_train(tmp_path / "job", splits, "--task", "digits", SM_CHANNEL_VALIDATION=str(empty))
    # THEN it exits non-zero and the failure file says why
    assert done.returncode != 0
    reason = (tmp_path / "job/output/failure").read_text()
    assert reason.startswith("FileNotFoundError")
    assert "validation" in reason


def test_bad_hyperparameter_fails_fast_naming_the_parameter(prepared_splits, tmp_path):
    splits = prepared_splits("digits")
    # GIVEN hyperparameters.json, as SageMaker writes it (all strings), with a bad value
    config = tmp_path / "job/input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"task": "digits", "epochs": "three"}))
    # WHEN the job starts
    done = run_train(tmp_path / "job", splits)
    # THEN it stops before training with a message naming the parameter and what is allowed
    assert done.returncode == 2
    reason = (tmp_path / "job/output/failure").read_text()
    assert "'epochs'" in reason
    assert "integer >= 1" in reason
    assert "[metric]" not in done.stdout
