"""Every workflow file passes actionlint, the GitHub Actions workflow linter (never skipped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflows.conftest import REPO_ROOT, workflow_files


def actionlint_binary() -> str:
    """actionlint from this interpreter's environment (the dev extra installs it there), else PATH."""
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("actionlint", path=search_path)
    if found is None:
        pytest.fail(
            "actionlint is not installed: install the dev extra (pip install -e '.[dev]'), "
            "which ships the actionlint binary"
        )
    return found


def test_the_workflows_exist() -> None:
    # GIVEN the workflows folder
    # WHEN it is listed
    names = {path.name for path in workflow_files()}

    # THEN the pull-request checks and the deploy pipeline are both there
    assert {"pull-request.yml", "deploy.yml"} <= names


def test_every_workflow_passes_actionlint() -> None:
    # GIVEN the actionlint binary and every workflow file
    binary = actionlint_binary()
    files = [str(path.relative_to(REPO_ROOT)) for path in workflow_files()]
    assert files, "no workflow files found"

    # WHEN actionlint checks them (syntax, expressions, action inputs, and the run: scripts with
    # shellcheck when it is installed)
    result = subprocess.run(
        [binary, "-no-color", *files], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    # THEN it reports nothing
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    # GIVEN a workflow with an undefined job in `needs` and a misspelt expression context
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  deploy:\n"
        "    runs-on: ubuntu-latest\n"
        "    needs: no-such-job\n"
        "    steps:\n"
        "      - run: echo ${{ varz.ROLE }}\n"
    )

    # WHEN actionlint checks it
    result = subprocess.run(
        [actionlint_binary(), "-no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # THEN it fails naming both problems: the linter really checks, so a green run above means something
    assert result.returncode != 0
    assert "no-such-job" in result.stdout
    assert "varz" in result.stdout
