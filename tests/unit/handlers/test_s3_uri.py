"""The one S3 URI parser every package uses."""

from __future__ import annotations

import pytest

from handlers.common.s3_uri import S3Uri


@pytest.mark.parametrize(
    ("uri", "bucket", "key", "prefix"),
    [
        ("s3://raw/capture/ep/", "raw", "capture/ep/", "capture/ep"),
        ("s3://raw/a/b.json", "raw", "a/b.json", "a/b.json"),
        ("s3://raw", "raw", "", ""),
        ("s3://raw/", "raw", "", ""),
    ],
)
def test_a_uri_splits_into_bucket_key_and_folder_prefix(uri: str, bucket: str, key: str, prefix: str) -> None:
    location = S3Uri.parse(uri)
    assert (location.bucket, location.key, location.prefix) == (bucket, key, prefix)


@pytest.mark.parametrize("uri", ["https://raw/capture", "s3:/raw/x", "s3://", "s3:///key", "raw/key"])
def test_anything_but_an_s3_uri_with_a_bucket_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://|no bucket"):
        S3Uri.parse(uri)


def test_children_are_addressed_inside_the_key_read_as_a_folder() -> None:
    assert str(S3Uri.parse("s3://b/models").child("job", "output", "model.tar.gz")) == (
        "s3://b/models/job/output/model.tar.gz"
    )
    assert str(S3Uri.parse("s3://b/models/").child("x")) == "s3://b/models/x"
    assert str(S3Uri.parse("s3://b").child("x")) == "s3://b/x"
