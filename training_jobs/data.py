"""Processed splits -> tensors and DataLoaders, and the model config a task's data implies."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    SequentialSampler,
    TensorDataset,
)

from models import TaskModel
from models.tabular import TabularRegressorConfig
from models.text import TextClassifierConfig
from models.vision import DigitsCNNConfig

from .tasks import CLASSIFICATION, Record, TaskSpec, read_records

Batch = Sequence[Tensor]  # forward() arguments followed by the targets


class TextDataset(Dataset[Any]):
    """Texts and labels; indexed by a whole batch of indices at once (see ``train_loader``)."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.items = [(str(r.features), int(r.target)) for r in records]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Tensor | list[int]) -> list[tuple[str, int]]:
        positions = index.tolist() if isinstance(index, Tensor) else index
        return [self.items[i] for i in positions]


class ShuffledBatches(Sampler[Tensor]):
    """Index tensors of one shuffled pass, reshuffled per epoch from ``seed + epoch``.

    Deriving each epoch's order from the epoch number (not from a generator's running state)
    makes a resumed run see exactly the order an uninterrupted one would.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Tensor]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).split(self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)


def read_split(task: TaskSpec, channel: str, channel_dir: Path) -> list[Record]:
    """The records of one input channel's split file."""
    path = channel_dir / task.file_name
    if not path.is_file():
        raise FileNotFoundError(f"channel {channel!r} has no {task.file_name} at {path}")
    records = read_records(task, path)
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def model_config_for(task: TaskSpec, train: Sequence[Record]) -> Any:
    """The model config for ``task``; tabular statistics come from the training split only."""
    if task.model_name == "digits-cnn":
        return DigitsCNNConfig(labels=list(task.labels))
    if task.model_name == "text-bow":
        return TextClassifierConfig(labels=list(task.labels))
    columns = list(zip(*(r.features for r in train), strict=True))
    targets = [float(r.target) for r in train]
    return TabularRegressorConfig(
        num_features=len(task.feature_names),
        feature_mean=[statistics.fmean(c) for c in columns],
        feature_std=[statistics.pstdev(c) or 1.0 for c in columns],
        target_mean=statistics.fmean(targets),
        target_std=statistics.pstdev(targets) or 1.0,
        feature_names=list(task.feature_names),
    )


def to_dataset(task: TaskSpec, records: Sequence[Record], model: TaskModel) -> Dataset[Any]:
    """Numeric splits are encoded once up front; text is encoded per batch (variable length)."""
    if task.data_format == "jsonl":
        return TextDataset(records)
    (features,) = model.encode([list(r.features) for r in records])
    dtype = torch.long if task.kind == CLASSIFICATION else torch.float32
    return TensorDataset(features, torch.tensor([r.target for r in records], dtype=dtype))


def collate_for(task: TaskSpec, model: TaskModel) -> Callable[[list[Any]], Batch] | None:
    if task.data_format != "jsonl":
        return _as_is  # a TensorDataset already returns the batch's (features, targets)

    def collate(items: list[tuple[str, int]]) -> Batch:
        texts, labels = zip(*items, strict=True)
        return (*model.encode(list(texts)), torch.tensor(labels, dtype=torch.long))

    return collate


def _as_is(batch: Any) -> Batch:
    return cast(Batch, batch)


class InProcessBatches:
    """Batches fetched in this process: ``collate(dataset[indices])`` for each sampled batch.

    With no workers and no pinning a DataLoader adds only its per-epoch iterator set-up and
    per-batch conversion, which for a small tabular model costs a measurable share of a step
    (bench/train_throughput.py). Same sampler, same batches, same order.
    """

    def __init__(
        self, dataset: Dataset[Any], sampler: Sampler[Any], collate: Callable[[Any], Batch] | None
    ) -> None:
        self.dataset, self.sampler, self.collate = dataset, sampler, collate

    def __iter__(self) -> Iterator[Any]:
        fetch = self.dataset.__getitem__
        for indices in self.sampler:
            batch = fetch(indices)
            yield self.collate(batch) if self.collate is not None else batch

    def __len__(self) -> int:
        return len(cast(Sized, self.sampler))


BatchSource = DataLoader[Any] | InProcessBatches


def train_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    seed: int,
    collate: Callable[[list[Any]], Batch] | None,
    num_workers: int,
    pin_memory: bool,
    distributed: bool,
) -> BatchSource:
    """Shuffling is reseeded per epoch (``set_loader_epoch``), so a resumed run sees the same order.

    The loader fetches whole batches (``dataset[indices]``): one tensor index per batch instead
    of one per sample plus a stack, which for small models is most of a step's cost.
    """
    batches: Sampler[Any]
    if distributed:
        batches = BatchSampler(DistributedSampler(dataset, shuffle=True, seed=seed), batch_size, False)
    else:
        batches = ShuffledBatches(len(cast(Sized, dataset)), batch_size, seed)
    if num_workers == 0 and not pin_memory:
        return InProcessBatches(dataset, batches, collate)
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def eval_loader(
    dataset: Dataset[Any], batch_size: int, collate: Callable[[list[Any]], Batch] | None
) -> DataLoader[Any]:
    batches = BatchSampler(SequentialSampler(cast(Sized, dataset)), max(batch_size, 256), drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=batches, collate_fn=collate)


def set_loader_epoch(loader: BatchSource, epoch: int) -> None:
    """Select ``epoch``'s shuffle (a DistributedSampler sits inside a BatchSampler)."""
    sampler = getattr(loader.sampler, "sampler", loader.sampler)
    if isinstance(sampler, ShuffledBatches | DistributedSampler):
        sampler.set_epoch(epoch)
