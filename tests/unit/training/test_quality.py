"""Each model trains on CPU in seconds to a stated quality on held-out (test) data."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics

import pytest

from training_jobs import evaluate, train
from training_jobs.metrics import METRIC_DEFINITIONS, METRIC_NAMES, format_metric_line

DIGITS_MIN_ACCURACY = 0.90
SPAM_MIN_ACCURACY = 0.90
DIABETES_MIN_R2 = 0.25
# The model's test RMSE must beat predicting the training mean by at least 10 %.
DIABETES_MAX_RMSE_VS_MEAN = 0.90


@pytest.mark.parametrize(("task", "minimum"), [("digits", DIGITS_MIN_ACCURACY), ("spam", SPAM_MIN_ACCURACY)])
def test_classifier_reaches_accuracy_on_test_split(trained, tmp_path, task, minimum):
    # GIVEN a model trained with the task's default hyperparameters
    run = trained(task)
    # WHEN it is evaluated on the held-out test split
    report = evaluate.evaluate(run.model_dir, run.splits / "test", tmp_path)
    # THEN its accuracy meets the stated threshold
    assert report["metrics"]["accuracy"]["value"] >= minimum


def test_tabular_regressor_beats_mean_predictor(trained, tmp_path):
    # GIVEN the diabetes regressor and the mean of the training targets as a baseline
    run = trained("diabetes")
    train_targets = [float(r["target"]) for r in csv.DictReader((run.splits / "train/data.csv").open())]
    test_targets = [float(r["target"]) for r in csv.DictReader((run.splits / "test/data.csv").open())]
    mean = statistics.fmean(train_targets)
    baseline_rmse = math.sqrt(statistics.fmean([(t - mean) ** 2 for t in test_targets]))
    # WHEN it is evaluated on the test split
    report = evaluate.evaluate(run.model_dir, run.splits / "test", tmp_path)
    # THEN it explains a stated share of the variance and beats the baseline's RMSE by 10 %
    assert report["metrics"]["r2"]["value"] >= DIABETES_MIN_R2
    assert report["metrics"]["rmse"]["value"] <= DIABETES_MAX_RMSE_VS_MEAN * baseline_rmse


def test_model_dir_holds_model_config_and_training_curve(trained):
    # GIVEN a finished training run
    run = trained("digits")
    # WHEN its model directory is read
    config = json.loads((run.model_dir / "model_config.json").read_text())
    curve = json.loads((run.model_dir / train.HISTORY_FILE).read_text())["epochs"]
    # THEN it names the architecture and holds one curve point per epoch with its metrics
    assert config["model"] == "digits-cnn"
    assert (run.model_dir / "model.pt").is_file()
    assert [int(point["epoch"]) for point in curve] == list(range(1, len(run.history) + 1))
    assert {"train_loss", "validation_loss", "validation_accuracy"} <= curve[-1].keys()


def test_tabular_config_stores_standardisation_statistics(trained):
    # GIVEN the trained tabular model's saved config
    run = trained("diabetes")
    config = json.loads((run.model_dir / "model_config.json").read_text())["config"]
    # WHEN compared with the training split
    ages = [float(r["age"]) for r in csv.DictReader((run.splits / "train/data.csv").open())]
    # THEN the input mean/std serving needs come from the training data
    assert config["feature_mean"][0] == pytest.approx(statistics.fmean(ages))
    assert config["feature_std"][0] == pytest.approx(statistics.pstdev(ages))
    assert len(config["feature_mean"]) == config["num_features"] == 10


@pytest.mark.parametrize("task", ["digits", "diabetes"])
def test_every_printed_metric_is_matched_by_its_definition(trained, task):
    # GIVEN the metric lines a real training run printed
    lines = [line for line in trained(task).stdout.splitlines() if line.startswith("[metric]")]
    assert lines
    definitions = {d["Name"]: re.compile(d["Regex"]) for d in METRIC_DEFINITIONS}
    for line in lines:
        printed = dict(pair.split("=") for pair in line.split()[1:])
        # WHEN each printed name is looked up in METRIC_DEFINITIONS
        for name, value in printed.items():
            match = definitions[name].search(line)
            # THEN its regex matches that line and captures exactly the printed value
            assert match is not None, (name, line)
            assert match.group(1) == value


def test_metric_regexes_do_not_confuse_similar_names():
    # GIVEN a line with validation_loss but no train_loss
    line = format_metric_line(2, {"validation_loss": 0.5, "validation_accuracy": 0.75})
    regex = {d["Name"]: d["Regex"] for d in METRIC_DEFINITIONS}
    # WHEN the train_loss regex is applied
    # THEN it does not pick up validation_loss
    assert re.search(regex["train_loss"], line) is None
    assert re.search(regex["validation_loss"], line).group(1) == "0.500000"
    assert set(METRIC_NAMES) < set(regex)


def test_unknown_metric_name_cannot_be_printed():
    # GIVEN a metric without a METRIC_DEFINITIONS entry
    # WHEN it is formatted THEN it is refused, so no printed metric goes unparsed
    with pytest.raises(ValueError, match="test_accuracy"):
        format_metric_line(1, {"test_accuracy": 1.0})
