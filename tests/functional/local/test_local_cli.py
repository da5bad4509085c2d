"""`mlctl local` as a user meets it when something is wrong: one line saying what to do, exit
codes, and nothing left running after a failed `up`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mlctl import cli
from mlctl.local.state import LocalState


def test_a_missing_optional_dependency_names_the_extra(monkeypatch, capsys, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real_find_spec(name, *a)
    )
    code = cli.main(["local", "up", "--state-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing moto[server]" in err and "'.[infra,train,lambda,serve,local]'" in err
    assert "Traceback" not in err


def test_down_with_nothing_running_says_so(capsys, tmp_path):
    assert cli.main(["local", "down", "--state-dir", str(tmp_path)]) == 0
    assert "no local platform is running" in capsys.readouterr().out


def test_a_failing_step_is_one_line_and_up_cleans_up_after_itself(capsys, tmp_path: Path):
    # GIVEN a run that cannot pass the dev stack's gate (one epoch of training)
    code = cli.main(["local", "up", "--epochs", "1", "--state-dir", str(tmp_path)])
    err = capsys.readouterr().err
    # THEN it fails with the pipeline's Fail step's reason on one line, the traceback only in the log
    assert code == 1
    expected = "the training pipeline Failed at step Fail: Model not registered: accuracy"
    assert err.startswith(f"mlctl local up: WorkflowError: {expected}")
    assert err.count("\n") == 1
    assert "Traceback" not in err and "Traceback" in (tmp_path / "logs" / "up.log").read_text()
    # AND nothing is left running (no --keep)
    assert LocalState.read(tmp_path) is None
    assert not (tmp_path / "ready.json").exists()


def test_a_second_up_on_the_same_folder_is_refused_and_touches_nothing(capsys, tmp_path: Path):
    from mlctl.local.commands import _only_up

    # GIVEN an `up` in progress on the folder (it holds the folder's lock)
    with _only_up(tmp_path):
        # WHEN another one starts
        code = cli.main(["local", "up", "--state-dir", str(tmp_path)])
    # THEN it is refused in one line naming the holder, and it started nothing
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mlctl local up: another `mlctl local up` (pid ") and err.count("\n") == 1
    assert not (tmp_path / "emulator.json").exists() and LocalState.read(tmp_path) is None


@pytest.fixture(autouse=True)
def _no_leftover_platform(tmp_path: Path):
    yield
    from mlctl.local.commands import stop_platform

    stop_platform(tmp_path, quiet=True)


@pytest.mark.parametrize("command", [["plan"], ["cost"], ["local", "up"]])
def test_a_stack_file_that_is_not_yaml_is_one_line_naming_it(command: list[str], capsys, tmp_path: Path):
    # GIVEN a stack file with a YAML syntax error
    root = Path(__file__).resolve().parents[3]
    broken = root / "Pulumi.yaml-syntax-test.yaml"
    broken.write_text("config:\n  aws:region: us-east-1\n  ml-platform:environment: [dev\n")
    try:
        # WHEN any command reads it
        code = cli.main(
            [
                *command,
                "--stack",
                "yaml-syntax-test",
                *(["--state-dir", str(tmp_path)] if "up" in command else []),
            ]
        )
    finally:
        broken.unlink()
    # THEN it fails with one line naming the file and the place, no traceback
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "Pulumi.yaml-syntax-test.yaml is not valid YAML: line 4, column 1" in err
