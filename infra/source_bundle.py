"""Training code as SageMaker consumes it: a reproducible ``sourcedir.tar.gz``.

Two kinds, one mechanism (SageMaker script mode: the toolkit unpacks the archive to
``/opt/ml/code``, installs its ``requirements.txt`` and runs the entry point):

- a team's source folder (``training.source.dir``), every file of it;
- the platform's own, for the built-in example tasks: the packages ``training_jobs/`` and
  ``models/`` plus a ``train.py`` at the root that runs ``training_jobs.train``, so the built-in
  tasks go through the same contract as a team's code, with no path of their own.

Each archive is byte-for-byte reproducible — sorted entries, zeroed timestamps and owners, no
caches — so its content hash names an immutable S3 key: the same code is never uploaded twice, and
a pipeline definition changes only when the code does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from infra.stack_config import project_root

BUNDLED_PACKAGES = ("training_jobs", "models")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".git", ".venv", ".ipynb_checkpoints"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
# The platform bundle's script-mode entry point (the built-in tasks' "train.py").
PLATFORM_ENTRY_POINT = "train.py"
_PLATFORM_ENTRY_SCRIPT = b"""\
\"\"\"Script-mode entry point of the platform's built-in tasks: python train.py --task digits ...\"\"\"

import sys

from training_jobs.train import main

if __name__ == "__main__":
    sys.exit(main())
"""
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # a source folder is code, not data: keep data in the raw bucket


@dataclass(frozen=True)
class SourceBundle:
    path: Path
    sha256: str

    @property
    def s3_key(self) -> str:
        """Content-addressed, so a key never holds two different bundles."""
        return f"code/training/{self.sha256[:16]}/sourcedir.tar.gz"


def build_source_bundle(out_dir: Path | None = None, root: Path | None = None) -> SourceBundle:
    """The platform's bundle (built-in tasks) under ``out_dir`` (default ``build/``): its path and hash."""
    source_root = root or project_root()
    files = {
        relative.as_posix(): (source_root / relative).read_bytes() for relative in _package_files(source_root)
    }
    files[PLATFORM_ENTRY_POINT] = _PLATFORM_ENTRY_SCRIPT
    return _write_bundle(files, out_dir or source_root / "build")


def build_folder_bundle(folder: Path, out_dir: Path | None = None) -> SourceBundle:
    """A team's source folder, every file of it (caches and VCS folders left out), as a bundle."""
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder {folder} does not exist")
    files = {relative.as_posix(): (folder / relative).read_bytes() for relative in _folder_files(folder)}
    size = sum(len(content) for content in files.values())
    if size > MAX_BUNDLE_BYTES:
        raise ValueError(f"source folder {folder} holds {size:,} bytes; keep data out of it (raw bucket)")
    return _write_bundle(files, out_dir or project_root() / "build")


def _write_bundle(files: dict[str, bytes], target_dir: Path) -> SourceBundle:
    data = _archive_bytes(files)
    digest = hashlib.sha256(data).hexdigest()
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"sourcedir-{digest[:16]}.tar.gz"
    if not path.exists():
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)  # whole or not at all, for concurrent plans
    return SourceBundle(path, digest)


def _package_files(root: Path) -> list[Path]:
    return sorted(path for package in BUNDLED_PACKAGES for path in _folder_files(root / package, root))


def _folder_files(folder: Path, relative_to: Path | None = None) -> list[Path]:
    base = relative_to or folder
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(base)
        if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix not in SKIPPED_SUFFIXES:
            files.append(relative)
    return sorted(files)


def _archive_bytes(files: dict[str, bytes]) -> bytes:
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            content = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    # gzip stores a timestamp in its header: zero it so the bytes depend only on the content.
    return gzip.compress(tar_buffer.getvalue(), mtime=0)
