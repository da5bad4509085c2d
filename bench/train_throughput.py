"""Training throughput: our Trainer's loop vs a naive loop, and time to a quality threshold.

    .venv/bin/python -m bench.train_throughput [--epochs 3] [--min-seconds 1] [--repeats 5] [--threads 1]

For each task the same model, data, optimizer and batch size run through
- a naive loop: tensors sliced by a shuffled index in a plain ``for`` (no DataLoader, no
  workers, no pinning), text encoded per batch exactly as the Trainer's collate does;
- ``Trainer.train_epoch`` as the training job builds it (``train.make_trainer``).
Throughput is training samples per second over whole epochs (at least ``--epochs`` and at
least ``--min-seconds``), after one warm-up epoch; the two loops alternate ``--repeats`` times
and the medians count (the machine may be shared).
Time to quality: a fresh model trained epoch by epoch (no checkpoints) until the validation
metric reaches the task's threshold; the wall time of that loop and the epoch reached.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from models import TaskModel, build
from training_jobs import data, prepare, train
from training_jobs.hyperparameters import parse_hyperparameters
from training_jobs.sm_env import TrainingEnv, TrainingPaths
from training_jobs.tasks import TASKS, TaskSpec, get_task
from training_jobs.trainer import Trainer

TARGET_RATIO = 0.95


def setup(
    task: TaskSpec,
    splits: Path,
    work: Path,
    *,
    device: torch.device | None = None,
    hyperparameters: Mapping[str, str] | None = None,
) -> tuple[Trainer, TaskModel, data.Dataset[Any], int]:
    """A fresh, seeded Trainer for ``task`` (no checkpoints), its model, dataset and batch size.

    ``device`` defaults to the CPU; ``hyperparameters`` (SageMaker's string form, e.g.
    ``{"amp": "false"}``) override the task's defaults (bench/gpu_check.py uses both).
    """
    hp = parse_hyperparameters({**(hyperparameters or {}), "task": task.name})
    train.seed_everything(hp.seed)
    records = data.read_split(task, "train", splits / "train")
    validation = data.read_split(task, "validation", splits / "validation")
    model = build(task.model_name, data.model_config_for(task, records))
    env = TrainingEnv(paths=TrainingPaths(work), model_dir=work / "model", output_data_dir=work / "out")
    trainer = train.make_trainer(
        env,
        hp,
        task,
        model,
        train_records=records,
        validation_records=validation,
        device=device or torch.device("cpu"),
    )
    # Checkpoint I/O is not part of the step loop being compared.
    trainer.config = dataclasses.replace(trainer.config, checkpoint_dir=None)
    return trainer, model, trainer.train_loader.dataset, hp.batch_size


def naive_epoch(trainer: Trainer, model: TaskModel, dataset: Any, batch_size: int) -> None:
    """The simplest correct loop over the same data, model, loss and optimizer."""
    model.train()
    order = torch.randperm(len(dataset))
    for start in range(0, len(dataset), batch_size):
        index = order[start : start + batch_size]
        if isinstance(dataset, data.TextDataset):
            texts = [dataset.items[i][0] for i in index.tolist()]
            inputs = model.encode(texts)
            targets = torch.tensor([dataset.items[i][1] for i in index.tolist()])
        else:
            features, labels = dataset.tensors
            inputs, targets = (features[index],), labels[index]
        loss = trainer.loss_fn(model(*inputs), targets)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()


def samples_per_second(
    run_epoch: Callable[[], object], samples: int, epochs: int, min_seconds: float
) -> float:
    """Whole epochs (at least ``epochs``, and at least ``min_seconds`` of them) after a warm-up one."""
    run_epoch()  # warm-up: first-call allocations and lazy initialisation
    done, start = 0, time.perf_counter()
    while done < epochs or time.perf_counter() - start < min_seconds:
        run_epoch()
        done += 1
    return samples * done / (time.perf_counter() - start)


def throughput(
    task: TaskSpec, splits: Path, work: Path, *, epochs: int, repeats: int, min_seconds: float
) -> dict[str, float]:
    trainer, model, dataset, batch_size = setup(task, splits, work)
    samples = len(dataset)  # type: ignore[arg-type]
    ours, naive = [], []
    for _ in range(repeats):
        naive.append(
            samples_per_second(
                lambda: naive_epoch(trainer, model, dataset, batch_size), samples, epochs, min_seconds
            )
        )
        ours.append(samples_per_second(lambda: trainer.train_epoch(1), samples, epochs, min_seconds))
    trainer_sps, naive_sps = statistics.median(ours), statistics.median(naive)
    return {
        "trainer_samples_per_s": trainer_sps,
        "naive_samples_per_s": naive_sps,
        "ratio": trainer_sps / naive_sps,
    }


def time_to_quality(task: TaskSpec, splits: Path, work: Path, max_epochs: int = 100) -> dict[str, float]:
    trainer, _, _, _ = setup(task, splits, work)
    key = f"validation_{task.quality_metric}"
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        trainer.train_epoch(epoch)
        value = trainer.validate()[key]
        if value >= task.quality_threshold:
            return {"seconds": time.perf_counter() - start, "epoch": epoch, "value": value}
    return {"seconds": float("nan"), "epoch": float("nan"), "value": value}


def prepared(task: str, root: Path) -> Path:
    # scikit-learn (the digits and diabetes data) only here: bench/gpu_check.py reuses this module
    # on machines without it, from raw files written elsewhere.
    from training_jobs.datasets import write_raw  # noqa: PLC0415

    write_raw(task, root / "raw")
    prepare.prepare(task, root / "raw", root / "processed")
    return root / "processed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", nargs="+", default=sorted(TASKS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="shortest timed run per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="alternating naive/Trainer measurements")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "tasks": {}}
    results["torch"] = torch.__version__
    print("| task | model | naive samples/s | Trainer samples/s | ratio | quality target | epochs | s |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.tasks:
            task = get_task(name)
            splits = prepared(name, Path(scratch) / name)
            with contextlib.redirect_stdout(io.StringIO()):
                speed = throughput(
                    task,
                    splits,
                    Path(scratch) / "w",
                    epochs=args.epochs,
                    repeats=args.repeats,
                    min_seconds=args.min_seconds,
                )
                quality = time_to_quality(task, splits, Path(scratch) / "q")
            results["tasks"][name] = {"throughput": speed, "time_to_quality": quality}
            target = f"validation {task.quality_metric} >= {task.quality_threshold}"
            print(
                f"| {name} | {task.model_name} | {speed['naive_samples_per_s']:,.0f} | "
                f"{speed['trainer_samples_per_s']:,.0f} | {speed['ratio']:.3f} | {target} | "
                f"{quality['epoch']:.0f} | {quality['seconds']:.2f} |",
                flush=True,
            )
    ratios = [r["throughput"]["ratio"] for r in results["tasks"].values()]
    print(f"\nminimum ratio {min(ratios):.3f} (target >= {TARGET_RATIO})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
