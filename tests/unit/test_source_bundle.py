"""The training code bundle: reproducible bytes, content-addressed key, only what containers need."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from infra.source_bundle import build_folder_bundle, build_source_bundle


def make_project(root: Path) -> None:
    (root / "training_jobs").mkdir(parents=True)
    (root / "training_jobs" / "train.py").write_text("print('train')\n")
    (root / "training_jobs" / "__pycache__").mkdir()
    (root / "training_jobs" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\x00cache")
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("")
    (root / "infra").mkdir()
    (root / "infra" / "__main__.py").write_text("import pulumi\n")


def test_the_bundle_holds_the_container_packages_and_nothing_else(tmp_path: Path) -> None:
    make_project(tmp_path / "src")
    bundle = build_source_bundle(tmp_path / "out", tmp_path / "src")
    with tarfile.open(bundle.path) as archive:
        assert archive.getnames() == ["models/__init__.py", "train.py", "training_jobs/train.py"]


def test_the_platform_bundle_runs_like_a_teams_script_mode_entry_point(tmp_path: Path) -> None:
    # GIVEN the platform's own bundle, unpacked as SageMaker's toolkit unpacks it
    bundle = build_source_bundle(tmp_path / "out")
    with tarfile.open(bundle.path) as archive:
        archive.extractall(tmp_path / "code", filter="data")
    # WHEN its root train.py runs from that folder (the toolkit's `python train.py --help`)
    result = subprocess.run(
        [sys.executable, "train.py", "--help"],
        cwd=tmp_path / "code",
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN it is the built-in training entry point, importable from the bundle alone
    assert result.returncode == 0, result.stderr
    assert "--learning_rate" in result.stdout or "--learning-rate" in result.stdout


def test_a_teams_folder_is_bundled_whole_without_caches(tmp_path: Path) -> None:
    source = tmp_path / "team"
    (source / "lib" / "__pycache__").mkdir(parents=True)
    (source / "train.py").write_text("print('team')\n")
    (source / "requirements.txt").write_text("numpy\n")
    (source / "lib" / "features.py").write_text("X = 1\n")
    (source / "lib" / "__pycache__" / "features.cpython-311.pyc").write_bytes(b"\x00")
    first = build_folder_bundle(source, tmp_path / "out")
    with tarfile.open(first.path) as archive:
        assert archive.getnames() == ["lib/features.py", "requirements.txt", "train.py"]
    # AND it is content-addressed: a change to any file is a new key
    (source / "lib" / "features.py").write_text("X = 2\n")
    assert build_folder_bundle(source, tmp_path / "out").s3_key != first.s3_key


def test_a_missing_team_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        build_folder_bundle(tmp_path / "missing", tmp_path / "out")


def test_the_same_code_gives_the_same_bytes_and_key(tmp_path: Path) -> None:
    # GIVEN the same sources written at two different times
    make_project(tmp_path / "a")
    first = build_source_bundle(tmp_path / "out-a", tmp_path / "a")
    make_project(tmp_path / "b")
    second = build_source_bundle(tmp_path / "out-b", tmp_path / "b")
    # THEN the archives are identical, so the key (and the pipeline definition) does not change
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.s3_key == second.s3_key == f"code/training/{first.sha256[:16]}/sourcedir.tar.gz"


def test_changed_code_gets_a_new_key(tmp_path: Path) -> None:
    make_project(tmp_path / "src")
    before = build_source_bundle(tmp_path / "out", tmp_path / "src")
    (tmp_path / "src" / "training_jobs" / "train.py").write_text("print('train v2')\n")
    after = build_source_bundle(tmp_path / "out", tmp_path / "src")
    assert after.s3_key != before.s3_key
    assert before.path.exists() and after.path.exists()
