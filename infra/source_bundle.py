"""The training code as SageMaker consumes it: a reproducible ``sourcedir.tar.gz``.

The archive holds the packages that run inside training and processing containers
(``training_jobs/`` and ``models/``). It is byte-for-byte reproducible — sorted entries, zeroed
timestamps and owners, no caches — so its content hash names an immutable S3 key: the same code
is never uploaded twice, and a pipeline definition changes only when the code does.
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
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class SourceBundle:
    path: Path
    sha256: str

    @property
    def s3_key(self) -> str:
        """Content-addressed, so a key never holds two different bundles."""
        return f"code/training/{self.sha256[:16]}/sourcedir.tar.gz"


def build_source_bundle(out_dir: Path | None = None, root: Path | None = None) -> SourceBundle:
    """Write the bundle under ``out_dir`` (default ``build/``) and return its path and hash."""
    source_root = root or project_root()
    data = _archive_bytes(source_root)
    digest = hashlib.sha256(data).hexdigest()
    target_dir = out_dir or source_root / "build"
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / f"sourcedir-{digest[:16]}.tar.gz"
    if not path.exists():
        path.write_bytes(data)
    return SourceBundle(path, digest)


def _bundled_files(root: Path) -> list[Path]:
    files = []
    for package in BUNDLED_PACKAGES:
        for path in (root / package).rglob("*"):
            relative = path.relative_to(root)
            if (
                path.is_file()
                and not SKIPPED_PARTS & set(relative.parts)
                and path.suffix not in SKIPPED_SUFFIXES
            ):
                files.append(relative)
    return sorted(files)


def _archive_bytes(root: Path) -> bytes:
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for relative in _bundled_files(root):
            content = (root / relative).read_bytes()
            info = tarfile.TarInfo(relative.as_posix())
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(content))
    # gzip stores a timestamp in its header: zero it so the bytes depend only on the content.
    return gzip.compress(tar_buffer.getvalue(), mtime=0)
