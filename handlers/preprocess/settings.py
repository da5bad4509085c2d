"""The batch preprocessing function's environment: the names ``infra/preprocessing.py`` sets."""

from __future__ import annotations

PROCESSED_BUCKET_ENV = "PROCESSED_BUCKET"  # where clean records and quarantined ones are written
MAX_OBJECT_BYTES_ENV = "MAX_OBJECT_BYTES"  # larger raw objects are refused whole
DEFAULT_MAX_OBJECT_BYTES = 256 * 1024 * 1024  # read whole: the function's memory is sized for it
