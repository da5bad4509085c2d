"""S3 transfers of the local training runner: channels in, checkpoints both ways, artifacts out."""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from emulator.training.errors import ArtifactExistsError, InvalidTrainingJobError
from handlers.common.s3_uri import S3Uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_location(uri: str) -> S3Uri:
    """``uri`` as an S3 address; anything else is an :class:`InvalidTrainingJobError`."""
    try:
        return S3Uri.parse(uri)
    except ValueError:
        raise InvalidTrainingJobError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)") from None


def download_prefix(s3: S3Client, source: S3Uri, destination: Path) -> int:
    """Copy every object under ``source`` into ``destination``, keeping relative paths; a URI that
    names one object (a code tarball) copies that object into ``destination`` under its own name.

    Returns the number of files written. Folder markers (keys ending in ``/``) are skipped.
    """
    if source.key and not source.key.endswith("/") and object_exists(s3, source):
        target = _inside(destination, PurePosixPath(source.key).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(source.bucket, source.key, str(target))
        return 1
    prefix = source.folder_prefix
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :]
            if not relative or relative.endswith("/"):
                continue
            target = _inside(destination, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(source.bucket, obj["Key"], str(target))
            count += 1
    return count


def upload_tree(s3: S3Client, source: Path, destination: S3Uri) -> int:
    """Copy every file under ``source`` to ``destination``, keeping relative paths."""
    count = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        key = destination.child(path.relative_to(source).as_posix()).key
        s3.upload_file(str(path), destination.bucket, key)
        count += 1
    return count


def object_exists(s3: S3Client, location: S3Uri) -> bool:
    try:
        s3.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            return False
        raise
    return True


def put_new_object(s3: S3Client, location: S3Uri, body: bytes | Path) -> None:
    """Write an object only if its key is free (``If-None-Match: *``), so no artifact is overwritten."""
    try:
        if isinstance(body, Path):
            with body.open("rb") as stream:
                s3.put_object(Bucket=location.bucket, Key=location.key, Body=stream, IfNoneMatch="*")
        else:
            s3.put_object(Bucket=location.bucket, Key=location.key, Body=body, IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
            raise ArtifactExistsError(f"{location} already exists; refusing to overwrite it") from exc
        raise


def make_tarball(source: Path, destination: Path) -> Path:
    """Pack the contents of ``source`` into a gzipped tar with members at the archive root."""
    with tarfile.open(destination, "w:gz") as archive:
        for child in sorted(source.iterdir()):
            archive.add(child, arcname=child.name)
    return destination


def _inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing keys such as ``../x`` that would escape ``root``."""
    parts = PurePosixPath(relative).parts
    if ".." in parts or PurePosixPath(relative).is_absolute():
        raise InvalidTrainingJobError(f"S3 key {relative!r} would be written outside {root}")
    return root.joinpath(*parts)
