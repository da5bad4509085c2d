"""Shared helpers for the workflow tests: where the files are, and reading them as GitHub does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
DEPLOY_STAGES = ("dev", "staging", "prod")


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])


def load_workflow(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS_DIR / name).read_text())
    assert isinstance(document, dict), f"{name} is not a YAML mapping"
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in document:
        document["on"] = document.pop(True)
    return document


@pytest.fixture(scope="session")
def deploy_workflow() -> dict[str, Any]:
    return load_workflow("deploy.yml")


@pytest.fixture(scope="session")
def pull_request_workflow() -> dict[str, Any]:
    return load_workflow("pull-request.yml")
