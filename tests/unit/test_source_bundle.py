"""The training code bundle: reproducible bytes, content-addressed key, only what containers need."""

from __future__ import annotations

import tarfile
from pathlib import Path

from infra.source_bundle import build_source_bundle


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
        assert archive.getnames() == ["models/__init__.py", "training_jobs/train.py"]


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
