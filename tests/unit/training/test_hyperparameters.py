"""Hyperparameters: SageMaker's strings become typed values; anything wrong is named."""

from __future__ import annotations

import json

import pytest

from training_jobs import train
from training_jobs.hyperparameters import HyperparameterError, parse_cli, parse_hyperparameters

from .conftest import training_env


def test_string_values_are_typed_and_task_defaults_fill_gaps():
    # GIVEN hyperparameters as SageMaker passes them: strings, some JSON-quoted by the SDK
    raw = {"task": '"spam"', "learning_rate": "0.05", "amp": "false", "sagemaker_program": "train.py"}
    # WHEN parsed
    hp = parse_hyperparameters(raw)
    # THEN values are typed, the spam task's defaults apply where nothing was given,
    # and the SDK's own sagemaker_* keys are ignored
    assert hp.task == "spam"
    assert hp.learning_rate == 0.05
    assert hp.amp is False
    assert hp.epochs == 5
    assert hp.batch_size == 32


@pytest.mark.parametrize(
    ("raw", "named", "allowed"),
    [
        ({"lr": "0.1"}, "lr", "learning_rate"),
        ({"epochs": "ten"}, "'epochs'", "integer >= 1"),
        ({"epochs": "0"}, "'epochs'", "integer >= 1"),
        ({"learning_rate": "-1"}, "'learning_rate'", "(0, 10]"),
        ({"amp": "maybe"}, "'amp'", "bool"),
        ({"task": "imagenet"}, "'task'", "digits"),
    ],
)
def test_bad_hyperparameter_message_names_parameter_and_allowed_values(raw, named, allowed):
    # GIVEN an unknown name or an invalid value
    # WHEN parsed
    with pytest.raises(HyperparameterError) as caught:
        parse_hyperparameters(raw)
    # THEN the message names the parameter and what would be accepted
    assert named in str(caught.value)
    assert allowed in str(caught.value)


def test_unknown_cli_argument_is_a_hyperparameter_error():
    # GIVEN a mistyped command-line flag
    # WHEN the CLI is parsed THEN the error lists the allowed flags
    with pytest.raises(HyperparameterError, match="--epochs"):
        parse_cli(["--epoch", "3"])


def test_cli_arguments_win_over_the_hyperparameters_file(prepared_splits, tmp_path, monkeypatch, capsys):
    # GIVEN a hyperparameters file asking for 3 epochs and a CLI asking for 1
    splits = prepared_splits("diabetes")
    env = training_env(tmp_path, splits)
    env.paths.hyperparameters_file.parent.mkdir(parents=True)
    env.paths.hyperparameters_file.write_text(json.dumps({"task": "diabetes", "epochs": "3"}))
    monkeypatch.setenv("MLP_SM_ROOT", str(tmp_path))
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(splits / "train"))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(splits / "validation"))
    # WHEN the job runs
    code = train.main(["--epochs", "1"])
    # THEN it trained one epoch, recording the effective hyperparameters
    assert code == 0
    metadata = json.loads((env.model_dir / train.METADATA_FILE).read_text())
    assert metadata["hyperparameters"]["epochs"] == "1"
    assert capsys.readouterr().out.count("[metric]") == 1


def test_rank_one_never_writes_the_failure_file(tmp_path):
    # GIVEN a non-zero rank of a distributed job
    env = training_env(tmp_path, tmp_path, rank=1, world_size=2)
    # WHEN it reports a failure THEN only rank 0 would write the file
    train.write_failure(env, "boom")
    assert not env.paths.failure_file.exists()
    train.write_failure(training_env(tmp_path, tmp_path), "boom")
    assert env.paths.failure_file.read_text() == "boom\n"
