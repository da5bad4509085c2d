"""Package a trained model as ``model.tar.gz`` for the SageMaker PyTorch inference container (weights,
config, ``code/inference.py``, a copy of ``models/`` and the sample request the model server warms up
with), byte-for-byte reproducible, and upload it under an immutable, versioned key. The layout:
docs/artifacts.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from models import CONFIG_FILE, WEIGHTS_FILE, persistence

from .baselines import BASELINE_FILE
from .sample_request import SAMPLE_REQUEST_FILE, sample_request
from .serving_code import serving_code_entries
from .train import HISTORY_FILE, METADATA_FILE

ARCHIVE_NAME = "model.tar.gz"
MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE, METADATA_FILE, HISTORY_FILE, BASELINE_FILE)
REQUIRED_MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE)
# Unpinned, already in the SageMaker PyTorch container: pip finds them satisfied and needs no
# network (endpoints run network-isolated). torch is never listed: reinstalling it would
# replace the container's CUDA build.
_KEY_PART = re.compile(r"[a-z0-9][a-z0-9-]*")
SHORT_HASH = 12


class ArtifactExistsError(Exception):
    """The artifact key is taken: artifacts are immutable, a new run needs a new key."""


def archive_entries(model_dir: Path) -> dict[str, bytes]:
    """Archive member name -> content, for the model in ``model_dir``."""
    missing = [name for name in REQUIRED_MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir} lacks {missing}")
    entries = {name: (model_dir / name).read_bytes() for name in MODEL_FILES if (model_dir / name).is_file()}
    # Always the current serving code, whether or not training already wrote a copy into the folder;
    # the sample request (the model server's warm-up) comes from the model's own config.
    return {**entries, **serving_code_entries(), SAMPLE_REQUEST_FILE: sample_request(model_dir)}


def build_model_archive(model_dir: Path, output_path: Path) -> Path:
    """Write the serving archive for ``model_dir`` to ``output_path`` (reproducible bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(archive_entries(model_dir).items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return output_path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_key(model_name: str, dataset_version: str, content_sha256: str, created_at: datetime) -> str:
    """The immutable key of one packaged model: a new run (time) or new bytes (hash) never
    reuse a key. ``created_at`` must be timezone-aware; it is written in UTC."""
    for label, part in (("model name", model_name), ("dataset version", dataset_version)):
        if not _KEY_PART.fullmatch(part):
            raise ValueError(f"{label} {part!r} must match {_KEY_PART.pattern}")
    if not re.fullmatch(r"[0-9a-f]{64}", content_sha256):
        raise ValueError("content_sha256 must be a sha256 hex digest")
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"models/{model_name}/{dataset_version}/{stamp}-{content_sha256[:SHORT_HASH]}/{ARCHIVE_NAME}"


def upload_model_archive(
    s3_client: Any, archive: Path, bucket: str, key: str, *, kms_key_id: str | None = None
) -> str:
    """Upload ``archive`` to ``s3://bucket/key`` unless the key exists; returns the S3 URI.

    ``head_object`` refuses early with a clear error; ``IfNoneMatch="*"`` makes S3 itself
    refuse if another writer wins the race in between. Raises ``ArtifactExistsError``.
    """
    if _object_exists(s3_client, bucket, key):
        raise ArtifactExistsError(f"s3://{bucket}/{key} already exists; artifacts are never overwritten")
    extra: dict[str, str] = (
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
    )
    try:
        s3_client.put_object(Bucket=bucket, Key=key, Body=archive.read_bytes(), IfNoneMatch="*", **extra)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"PreconditionFailed", "ConditionalRequestConflict"}:
            raise ArtifactExistsError(f"s3://{bucket}/{key} was written concurrently") from exc
        raise
    return f"s3://{bucket}/{key}"


def _object_exists(s3_client: Any, bucket: str, key: str) -> bool:
    try:
        s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build model.tar.gz and print its artifact key.")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(ARCHIVE_NAME))
    parser.add_argument("--dataset-version", default=None, help="defaults to the training metadata's")
    parser.add_argument("--bucket", default=None, help="upload to this bucket (boto3 default credentials)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    archive = build_model_archive(args.model_dir, args.output)
    document = persistence.read_model_config(args.model_dir)
    version = args.dataset_version or _metadata_version(args.model_dir)
    key = artifact_key(document["model"], version, sha256_of(archive), datetime.now(UTC))
    print(key)
    if args.bucket:
        print(upload_model_archive(boto3.client("s3"), archive, args.bucket, key))
    return 0


def _metadata_version(model_dir: Path) -> str:
    path = model_dir / METADATA_FILE
    version = json.loads(path.read_text()).get("dataset_version") if path.is_file() else None
    if not version:
        raise ValueError("no dataset version: pass --dataset-version")
    return str(version)


if __name__ == "__main__":
    sys.exit(main())
