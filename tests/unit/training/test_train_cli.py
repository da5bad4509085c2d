"""train.py as a command-line program: --help, argument spellings, one-line mistakes, script mode."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from training_jobs.hyperparameters import (
    HyperparameterError,
    Hyperparameters,
    parse_cli,
    parse_hyperparameters,
)
from training_jobs.tasks import TASKS

from .conftest import REPO_ROOT, subprocess_env

TIMEOUT_S = 120
TYPE_NAMES = {"int": "INT", "float": "FLOAT", "bool": "BOOL"}
# What the epilog must tell a team porting its job: where each part of the contract lives.
CONTRACT_TERMS = [
    "hyperparameters.json",
    "SM_HPS",
    "--name value",
    "sagemaker_",
    "SM_CHANNEL_TRAIN",
    "SM_CHANNEL_VALIDATION",
    "SM_MODEL_DIR",
    "/opt/ml/checkpoints",
    "MLP_SM_ROOT",
    "output/failure",
]


def run_module(
    module: str, *args: str, root: Path, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with the container root at ``root`` (no input channels)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=subprocess_env(root, root / "no-data"),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def option_blocks(help_text: str) -> dict[str, str]:
    """Each option's help entry, by its first spelling without dashes, whitespace collapsed."""
    options = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in options.splitlines():
        if line.startswith("  -"):
            current = blocks.setdefault(line.split()[0].rstrip(",").lstrip("-"), [])
        current.append(line)
    return {name: " ".join(" ".join(lines).split()) for name, lines in blocks.items()}


def shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture(scope="module")
def help_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    done = run_module("training_jobs.train", "--help", root=tmp_path_factory.mktemp("help"))
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_usage_and_exits_zero_without_touching_the_job(tmp_path, flag):
    # GIVEN a job root with a hyperparameters file that would fail the job
    config = tmp_path / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text('{"epochs": "three"}')
    # WHEN the program is asked for help
    done = run_module("training_jobs.train", flag, root=tmp_path)
    # THEN it prints the usage, exits 0, and neither trains nor reports a failure
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
    assert done.stderr == ""
    assert "[metric]" not in done.stdout
    assert not (tmp_path / "output/failure").exists()


@pytest.mark.parametrize("hyperparameter", fields(Hyperparameters), ids=lambda f: f.name)
def test_help_shows_each_hyperparameter_with_type_default_and_allowed_values(help_text, hyperparameter):
    # GIVEN the usage text
    blocks = option_blocks(help_text)
    # THEN the hyperparameter has an entry under both spellings...
    name = hyperparameter.name
    block = blocks[name]
    assert f"--{name.replace('_', '-')}" in block
    # ...with its type (or its choices), its default and what is allowed
    metavar = TYPE_NAMES.get(str(hyperparameter.type), "{")
    assert f"--{name} {metavar}" in block
    assert f"default: {shown(hyperparameter.default)}" in block
    assert "allowed: " in block
    # ...and every task's own default for it
    for task in TASKS.values():
        if name in task.defaults:
            assert f"{task.name} {shown(task.defaults[name])}" in block


def test_help_names_the_allowed_values_of_the_choices(help_text):
    blocks = option_blocks(help_text)
    assert all(task in blocks["task"] for task in TASKS)
    assert "refuse" in blocks["on_checkpoint_mismatch"]
    assert "restart" in blocks["on_checkpoint_mismatch"]


def test_help_marks_exactly_the_identity_hyperparameters(help_text):
    # GIVEN the hyperparameters a checkpoint must match to resume
    identity = set(Hyperparameters().identity())
    # THEN the usage marks those, and only those
    blocks = option_blocks(help_text)
    marked = {f.name for f in fields(Hyperparameters) if "run identity" in blocks[f.name]}
    assert marked == identity
    assert "epochs" not in marked


@pytest.mark.parametrize("term", CONTRACT_TERMS)
def test_help_describes_the_sagemaker_contract(help_text, term):
    assert term in help_text


@pytest.mark.parametrize("module", ["training_jobs.prepare", "training_jobs.evaluate"])
def test_the_other_job_scripts_print_usage_and_exit_zero(tmp_path, module):
    done = run_module(module, "--help", root=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")


def test_unknown_argument_exits_2_with_one_line_naming_it_and_the_allowed_ones(tmp_path):
    # GIVEN a mistyped flag
    # WHEN the job starts
    done = run_module("training_jobs.train", "--epoch", "3", "--task=digits", root=tmp_path)
    # THEN it stops with exit code 2 and one line naming the flag and the allowed ones
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'--epoch'" in lines[0]
    assert all(f"--{f.name}" in lines[0] for f in fields(Hyperparameters))
    assert "Traceback" not in done.stderr
    # ...and SageMaker's FailureReason says the same
    assert (tmp_path / "output/failure").read_text().strip() == lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch_size", "8"],
        ["--batch-size", "8"],
        ["--batch_size=8"],
        ["--batch-size=8"],
    ],
)
def test_both_spellings_and_both_forms_give_the_same_hyperparameter(argv):
    assert parse_cli(argv).hyperparameters == {"batch_size": "8"}


def test_sagemaker_reserved_arguments_are_ignored():
    # GIVEN arguments as a toolkit may pass them, SageMaker's own keys included
    argv = ["--sagemaker_program", "train.py", "--epochs", "2", "--sagemaker-region=us-east-1"]
    # WHEN parsed THEN only the job's hyperparameters remain, each with its own value
    assert parse_cli(argv).hyperparameters == {"epochs": "2"}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--epochs"], "--epochs"),  # a flag without its value
        (["--learning", "0.1"], "--learning"),  # abbreviations are typos, not prefixes
        (["digits"], "digits"),  # a stray word
    ],
)
def test_command_line_mistakes_are_one_line_errors_naming_the_argument(argv, named):
    with pytest.raises(HyperparameterError) as caught:
        parse_cli(argv)
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_checkpoint_mismatch_policy_accepts_only_refuse_or_restart():
    assert parse_hyperparameters({"on-checkpoint-mismatch": "restart"}).on_checkpoint_mismatch == "restart"
    with pytest.raises(HyperparameterError, match="'on_checkpoint_mismatch'.*refuse.*restart"):
        parse_hyperparameters({"on_checkpoint_mismatch": "ignore"})


SHIM = """\
import sys

from training_jobs.train import main

if __name__ == "__main__":
    sys.exit(main())
"""


def test_script_mode_entry_point_trains_with_arguments_as_the_toolkit_passes_them(prepared_splits, tmp_path):
    # GIVEN a root-level train.py calling main, as script mode runs it from the code folder
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(SHIM)
    root, splits = tmp_path / "job", prepared_splits("diabetes")
    args = ["--epochs", "1", "--task", "diabetes", "--batch-size", "16", "--sagemaker_program", "train.py"]
    # WHEN it runs with the hyperparameters as arguments
    done = subprocess.run(
        [sys.executable, "train.py", *args],
        env=subprocess_env(root, splits),
        cwd=code,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    # THEN it trains the asked epochs with the asked batch size and writes the model
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("[metric]")] == [
        "epoch=1"
    ]
    assert (root / "model/model.pt").is_file()
    metadata = json.loads((root / "model/training_metadata.json").read_text())
    assert metadata["hyperparameters"]["batch_size"] == "16"
