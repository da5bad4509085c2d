"""The baseline from real task data and a real (untrained) model, as train.py would write it."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import build
from training_jobs import data, prepare
from training_jobs.baselines import read_baseline, validation_confidences, write_baseline
from training_jobs.datasets import write_raw
from training_jobs.tasks import get_task


@pytest.mark.parametrize("task_name", ["digits", "spam", "diabetes"])
def test_train_py_lines_write_a_baseline_for_every_task(tmp_path: Path, task_name: str) -> None:
    # GIVEN a task's prepared splits and a model built for it
    pytest.importorskip("torch")
    task = get_task(task_name)
    write_raw(task_name, tmp_path / "raw")
    prepare.main(
        ["--task", task_name, "--input-dir", str(tmp_path / "raw"), "--output-dir", str(tmp_path / "p")]
    )
    train = data.read_split(task, "train", tmp_path / "p" / "train")
    validation = data.read_split(task, "validation", tmp_path / "p" / "validation")
    model = build(task.model_name, data.model_config_for(task, train))

    # WHEN the lines proposed for train.py run
    confidences = validation_confidences(model, [r.features for r in validation])
    path = write_baseline(tmp_path, [r.features for r in train], confidences, task.feature_names or None)

    # THEN the baseline describes the features the endpoint receives, and the confidence if any
    document = read_baseline(path)
    expected_names = list(task.feature_names) or ["text_chars", "text_words"]
    assert document["feature_names"] == expected_names
    assert document["features"][expected_names[0]]["count"] == len(train)
    if task.kind == "regression":
        assert document["confidence"] is None
    else:
        assert len(confidences) == len(validation)
        assert all(1 / len(task.labels) - 1e-6 <= c <= 1.0 for c in confidences)
        assert document["confidence"]["count"] == len(validation)
