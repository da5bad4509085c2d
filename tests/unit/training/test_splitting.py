"""Stable split assignment: a record's split depends on its content only, in every dataset version."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from handlers.common import contracts
from training_jobs import prepare
from training_jobs.splitting import SPLIT_NAMES, assign_splits, split_fractions, split_of
from training_jobs.tasks import get_task

TASK = get_task("diabetes")


def diabetes_row(i: int) -> str:
    return ",".join([str(20 + i % 60), str(1 + i % 2), *(f"{i}.{k}" for k in range(8)), str(i * 3)])


def write_raw(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "diabetes.csv").write_text("\n".join([",".join(TASK.header()), *rows]) + "\n")
    return folder


def placed(out: Path) -> dict[str, str]:
    """Each written row -> the split holding it."""
    return {
        line: split
        for split in SPLIT_NAMES
        for line in (out / split / TASK.file_name).read_text().splitlines()[1:]
    }


def test_a_built_in_task_keeps_each_records_split_in_the_next_version(tmp_path):
    # GIVEN version 1, and version 2 = version 1's rows plus as many again, in another order
    first = [diabetes_row(i) for i in range(300)]
    second = first + [diabetes_row(i) for i in range(300, 600)]
    random.Random(11).shuffle(second)
    prepare.prepare("diabetes", write_raw(tmp_path / "raw1", first), tmp_path / "v1")
    prepare.prepare("diabetes", write_raw(tmp_path / "raw2", second), tmp_path / "v2")
    # WHEN each record's split is looked up in both versions
    v1, v2 = placed(tmp_path / "v1"), placed(tmp_path / "v2")
    # THEN none moved: version 2's test split holds no row version 1 trained on
    assert len(v1) == 300 and len(v2) == 600
    assert {row: v2[row] for row in v1} == v1
    assert not [row for row, split in v2.items() if split == "test" and v1.get(row) == "train"]


def test_the_input_order_does_not_change_the_dataset_version(tmp_path):
    rows = [diabetes_row(i) for i in range(200)]
    shuffled = random.Random(2).sample(rows, len(rows))
    one = prepare.prepare("diabetes", write_raw(tmp_path / "a", rows), tmp_path / "oa")
    other = prepare.prepare("diabetes", write_raw(tmp_path / "b", shuffled), tmp_path / "ob")
    assert one["dataset_version"] == other["dataset_version"]


def test_buckets_give_the_declared_shares():
    # GIVEN many distinct keys
    counts = Counter(split_of(f"record-{i}") for i in range(20_000))
    # THEN each split's share is within a percentage point of its declared fraction
    for name, fraction in split_fractions().items():
        assert abs(counts[name] / 20_000 - fraction) < 0.01


def test_a_seed_re_splits_and_the_same_seed_repeats():
    keys = [f"k{i}" for i in range(500)]
    default = assign_splits(keys, str)
    assert assign_splits(reversed(keys), str) == default
    assert assign_splits(keys, str, seed=7) != default
    assert assign_splits(keys, str, seed=7) == assign_splits(keys, str, seed=7)


def test_the_generic_preparer_names_the_serving_files_as_the_deployer_does():
    # training_jobs cannot import handlers (the training container ships without it): compare here.
    assert prepare.INPUT_SCHEMA_FILE == contracts.INPUT_SCHEMA_FILE
    assert prepare.BASELINE_FILE == contracts.BASELINE_FILE
