"""A model brought to ``mlctl models register``, as the one ``model.tar.gz`` that is checked and uploaded.

Three forms are taken, all ending as an archive in the SageMaker PyTorch layout:

- a ``model.tar.gz`` (gzip tar): used byte for byte as it is;
- a folder in that layout (weights at its root, ``code/inference.py``, optionally
  ``code/requirements.txt``): packed reproducibly (sorted members, zeroed times and owners, no
  ``__pycache__``), so the same files always give the same archive and the same sha256;
- a lone TorchScript file or ``torch.export`` program (``.pt``, ``.pth``, ``.pt2``): packed alone as
  ``model<suffix>``, which the platform's default handler loads.

Given a sample request (the one ``register`` checks the model with), the archive carries it as
``code/sample-request.json``, which the model server sends before it reports healthy (its warm-up):
packed beside the other files, or, for a ``model.tar.gz`` without one, appended to a copy of it
(every member as it was, then the request). One the model brings already is kept.

The layout is checked from the member names before the model server loads anything: an archive
with no weights, or with neither code nor a file the default handler loads, is refused in one line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from handlers.common.contracts import SAMPLE_REQUEST_FILE
from mlctl.targets import CommandError

CODE_DIR = "code"
INFERENCE_FILE = f"{CODE_DIR}/inference.py"
# What the platform's default model_fn loads (handlers/serving/artifact.py, which needs torch).
LONE_MODEL_SUFFIXES = (".pt", ".pth", ".pt2")
DEFAULT_MODEL_FILES = ("model.pt", "model.pt2")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
ARCHIVE_NAME = "model.tar.gz"
_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
_CHUNK = 1 << 20


class ArtifactError(CommandError):
    """The model cannot be registered as given; the message says why."""


@dataclass(frozen=True)
class ModelArchive:
    """The archive to check and upload, and its content address."""

    path: Path
    sha256: str
    members: tuple[str, ...]


def build_archive(source: Path, work_dir: Path, sample_request: bytes | None = None) -> ModelArchive:
    """The ``model.tar.gz`` for ``source`` (an archive, a folder or a lone model file), its layout checked.

    Parameters: ``source`` what the user named; ``work_dir`` where a packed archive is written;
    ``sample_request`` a JSON request body to carry as ``code/sample-request.json`` (unless the
    model brings one). Raises :class:`ArtifactError` when it is missing, of another kind, or in the
    wrong layout.
    """
    if not source.exists():
        raise ArtifactError(f"{source} does not exist")
    if source.is_dir():
        files = _folder_files(source)
        check_layout([name for name, _ in files], str(source))
        files += _sample_file([name for name, _ in files], sample_request, work_dir)
        path = pack(files, work_dir / ARCHIVE_NAME)
    elif source.name.endswith(ARCHIVE_SUFFIXES):
        members = _archive_members(source)
        check_layout(members, str(source))
        extra = _sample_file(members, sample_request, work_dir)
        path = append_members(source, extra, work_dir / ARCHIVE_NAME) if extra else source
    elif source.suffix in LONE_MODEL_SUFFIXES:
        files = [(f"model{source.suffix}", source)]
        path = pack(files + _sample_file([], sample_request, work_dir), work_dir / ARCHIVE_NAME)
    else:
        raise ArtifactError(
            f"{source} is neither a model.tar.gz, a model folder, nor a {'/'.join(LONE_MODEL_SUFFIXES)} file"
        )
    return ModelArchive(path, file_sha256(path), tuple(_archive_members(path)))


def check_layout(members: list[str], where: str) -> None:
    """Refuse what no SageMaker PyTorch container could serve, naming what is missing."""
    files = {name for name in members if name}
    if not files:
        raise ArtifactError(f"{where} is empty")
    has_code = INFERENCE_FILE in files
    weights = [name for name in files if not name.startswith(f"{CODE_DIR}/")]
    lone = sorted(name for name in files if "/" not in name and name.endswith(LONE_MODEL_SUFFIXES))
    nested = _single_top_folder(files)
    if nested and not has_code and not lone:
        raise ArtifactError(
            f"{where} holds everything under {nested}/: the archive's root must hold the weights and "
            f"{INFERENCE_FILE} (pack the folder's contents, not the folder)"
        )
    if has_code and not weights:
        raise ArtifactError(f"{where} has {INFERENCE_FILE} but no weights beside {CODE_DIR}/")
    if not has_code and not lone:
        raise ArtifactError(
            f"{where} has neither {INFERENCE_FILE} nor a {'/'.join(LONE_MODEL_SUFFIXES)} file at its root "
            "(the SageMaker PyTorch layout: weights at the root and code/inference.py)"
        )
    if not has_code and len(lone) > 1 and not set(DEFAULT_MODEL_FILES) & files:
        raise ArtifactError(
            f"{where} has no {INFERENCE_FILE} and several model files {lone}: the default handler "
            f"loads one (name it {DEFAULT_MODEL_FILES[0]}, or add a model_fn in {INFERENCE_FILE})"
        )


def pack(files: list[tuple[str, Path]], out: Path) -> Path:
    """A gzip tar of ``files`` (archive name, file), byte-for-byte the same for the same files."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name, path in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as content:
                archive.addfile(info, content)
    return out


def append_members(archive: Path, files: list[tuple[str, Path]], out: Path) -> Path:
    """A copy of the gzip tar ``archive`` with ``files`` (archive name, file) added after its members
    (each member's bytes and metadata as they were), the same bytes for the same input."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tarfile.open(archive, "r:gz") as source,
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as copy,
    ):
        for member in source:
            copy.addfile(member, source.extractfile(member) if member.isfile() else None)
        for name, path in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = path.stat().st_size, 0o644
            with path.open("rb") as content:
                copy.addfile(info, content)
    return out


def _sample_file(members: list[str], sample_request: bytes | None, work_dir: Path) -> list[tuple[str, Path]]:
    """The sample request to add, as (archive name, file): none without one or when the model has one."""
    if sample_request is None or SAMPLE_REQUEST_FILE in members:
        return []
    path = work_dir / "sample-request.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sample_request)
    return [(SAMPLE_REQUEST_FILE, path)]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as content:
        while chunk := content.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_files(folder: Path) -> list[tuple[str, Path]]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in names:
            path = Path(root) / name
            if path.is_symlink():
                raise ArtifactError(f"{path} is a symbolic link; copy the file it points at into the folder")
            if path.suffix != ".pyc":
                files.append((path.relative_to(folder).as_posix(), path))
    return files


def _archive_members(path: Path) -> list[str]:
    """The archive's file names, normalised; an unreadable or unsafe archive is refused."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = archive.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactError(f"{path} is not a gzip-compressed tar archive ({exc})") from None
    names = []
    for member in members:
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or member.issym() or member.islnk():
            raise ArtifactError(f"{path}: member {member.name!r} is a link or leaves the archive's folder")
        if member.isfile():
            names.append(name.as_posix().removeprefix("./"))
    return names


def _single_top_folder(files: set[str]) -> str | None:
    tops = {name.split("/", 1)[0] for name in files}
    return next(iter(tops)) if len(tops) == 1 and all("/" in name for name in files) else None
