"""``s3://bucket/key`` addresses: the one parser every package uses."""

from __future__ import annotations

from dataclasses import dataclass

SCHEME = "s3://"


@dataclass(frozen=True)
class S3Uri:
    """An S3 address; ``key`` may be a prefix (without a leading slash) or empty."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """``s3://bucket/some/key`` -> ``S3Uri("bucket", "some/key")``; anything else is a ValueError."""
        if not uri.startswith(SCHEME):
            raise ValueError(f"{uri!r} is not an s3:// URI")
        bucket, _, key = uri.removeprefix(SCHEME).partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} names no bucket")
        return cls(bucket, key)

    @property
    def prefix(self) -> str:
        """The key without leading or trailing slashes."""
        return self.key.strip("/")

    @property
    def folder_prefix(self) -> str:
        """The key as a folder: ``data/train`` and ``data/train/`` both mean ``data/train/``."""
        return f"{self.key.rstrip('/')}/" if self.key.strip("/") else ""

    def child(self, *parts: str) -> S3Uri:
        """The address of ``parts`` inside this one, read as a folder."""
        return S3Uri(self.bucket, self.folder_prefix + "/".join(parts))

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"
