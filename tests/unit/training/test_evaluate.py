"""evaluate: hand-checkable metrics, the evaluation.json shape the pipeline condition reads."""

from __future__ import annotations

import json
import math
import tarfile

import pytest
from sklearn import metrics as skm

from training_jobs import evaluate
from training_jobs.evaluation_report import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    classification_metrics,
    regression_metrics,
)


def test_classification_metrics_on_a_hand_checked_example():
    # GIVEN 4 predictions, one wrong: class 0 recall 1/2, class 1 precision 2/3
    y_true, y_pred = [0, 0, 1, 1], [0, 1, 1, 1]
    # WHEN scored
    got = classification_metrics(y_true, y_pred)
    # THEN accuracy 3/4; macro precision (1 + 2/3)/2, recall (1/2 + 1)/2, F1 (2/3 + 4/5)/2
    assert got["accuracy"] == pytest.approx(0.75)
    assert got["precision"] == pytest.approx(5 / 6)
    assert got["recall"] == pytest.approx(0.75)
    assert got["f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_classification_metrics_agree_with_scikit_learn_with_an_unpredicted_class():
    # GIVEN three classes, one of which is never predicted
    y_true, y_pred = [0, 1, 2, 2, 1, 0], [0, 1, 1, 1, 1, 0]
    got = classification_metrics(y_true, y_pred)
    # THEN macro scores match scikit-learn's (zero_division=0)
    macro = {"average": "macro", "zero_division": 0}
    assert got["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, **macro))
    assert got["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, **macro))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, **macro))


def test_regression_metrics_on_a_hand_checked_example():
    # GIVEN one prediction off by 1 among three targets 1, 2, 3 (SS_tot = 2)
    got = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    # THEN RMSE sqrt(1/3), MAE 1/3, R2 1 - 1/2
    assert got["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert got["mae"] == pytest.approx(1 / 3)
    assert got["r2"] == pytest.approx(0.5)


def test_evaluation_json_has_the_shape_the_pipeline_reads(trained, tmp_path):
    # GIVEN a trained classifier and its prepared test split
    run = trained("digits")
    # WHEN evaluated
    evaluate.evaluate(run.model_dir, run.splits / "test", tmp_path)
    # THEN evaluation.json answers every documented JSON path with a number, and names
    # the model and the dataset version from the manifest
    document = json.loads((tmp_path / "evaluation.json").read_text())
    for name in ("accuracy", "precision", "recall", "f1"):
        assert 0.0 <= document["metrics"][name]["value"] <= 1.0
    assert set(document["metrics"]) == set(CLASSIFICATION_METRICS)
    manifest = json.loads((run.splits / "manifest.json").read_text())
    assert document["dataset_version"] == manifest["dataset_version"]
    assert document["model"] == "digits-cnn"
    assert document["samples"] == manifest["files"]["test/data.csv"]["rows"]


def test_regression_report_and_training_output_archive(trained, tmp_path):
    # GIVEN the regressor as SageMaker hands it to a processing step: model.tar.gz
    run = trained("diabetes")
    (tmp_path / "model").mkdir()
    with tarfile.open(tmp_path / "model/model.tar.gz", "w:gz") as tar:
        for path in run.model_dir.iterdir():
            tar.add(path, arcname=path.name)
    # WHEN evaluated through the script contract
    args = ["--model-dir", str(tmp_path / "model"), "--test-dir", str(run.splits / "test")]
    code = evaluate.main([*args, "--output-dir", str(tmp_path)])
    # THEN it reads the archive and reports the regression metrics
    assert code == 0
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(document["metrics"]) == set(REGRESSION_METRICS)
    assert document["metrics"]["rmse"]["value"] > 0
    assert document["metrics"]["mae"]["value"] <= document["metrics"]["rmse"]["value"]
    assert document["metrics"]["r2"]["value"] < 1.0


def test_evaluation_output_carries_the_models_serving_files(tmp_path):
    # GIVEN a model archive holding the serving files training writes
    import tarfile

    from training_jobs.evaluate import copy_serving_files

    source = tmp_path / "model-files"
    source.mkdir()
    (source / "input-schema.json").write_text('{"kind": "text"}')
    (source / "baseline.json").write_text('{"features": []}')
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as tar:
        for path in source.iterdir():
            tar.add(path, arcname=path.name)
    # WHEN the evaluate step copies them out
    copied = copy_serving_files(model_dir, tmp_path / "evaluation")
    # THEN they sit next to the report, where the deployer looks for them
    assert copied == ["input-schema.json", "baseline.json"]
    assert (tmp_path / "evaluation" / "input-schema.json").read_text() == '{"kind": "text"}'
