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
    # THEN it fails with the step's reason on one line, the traceback only in the log
    assert code == 1
    assert err.startswith("mlctl local up: WorkflowError: model not registered: accuracy")
    assert "Traceback" not in err and "Traceback" in (tmp_path / "logs" / "up.log").read_text()
    # AND nothing is left running (no --keep)
    assert LocalState.read(tmp_path) is None
    assert not (tmp_path / "ready.json").exists()


@pytest.fixture(autouse=True)
def _no_leftover_platform(tmp_path: Path):
    yield
    from mlctl.local.commands import stop_platform

    stop_platform(tmp_path, quiet=True)
