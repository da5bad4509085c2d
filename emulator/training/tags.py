"""The local runner's record of a job's outcome (status, failure reason, final metrics), kept in
SageMaker tags within SageMaker's tag limits, since moto cannot record them (docs/local-platform.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

TAG_PREFIX = "mlp:"
STATUS_TAG = "mlp:status"
FAILURE_REASON_TAG = "mlp:failure-reason"
METRIC_TAG_PREFIX = "mlp:metric:"

MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# 1 status + 8 reason chunks + at most 40 metrics stays within SageMaker's 50 tags per resource.
MAX_REASON_CHUNKS = 8

_VERBATIM = re.compile(r"[A-Za-z0-9 _.:/+\-@]")
_ESCAPED_BYTES = re.compile(r"(?:=[0-9A-F]{2})+")


def encode(text: str) -> str:
    """Escape ``text`` into SageMaker's tag alphabet (reversible with :func:`decode`)."""
    return "".join(_encode_char(char) for char in text)


def decode(text: str) -> str:
    """Undo :func:`encode`."""
    return _ESCAPED_BYTES.sub(lambda match: bytes.fromhex(match.group().replace("=", "")).decode(), text)


def _encode_char(char: str) -> str:
    return char if _VERBATIM.fullmatch(char) else "".join(f"={byte:02X}" for byte in char.encode())


def reason_chunks(reason: str) -> list[str]:
    """The encoded reason in tag-value-sized chunks, at most ``MAX_REASON_CHUNKS`` of them.

    Characters are never split across chunks; what does not fit is left off the end.
    """
    chunks = [""]
    for char in reason:
        token = _encode_char(char)
        if len(chunks[-1]) + len(token) > MAX_TAG_VALUE:
            if len(chunks) == MAX_REASON_CHUNKS:
                break
            chunks.append("")
        chunks[-1] += token
    return chunks


def recordable_reason(reason: str) -> str:
    """The part of ``reason`` the record keeps (all of it unless it is very long)."""
    return decode("".join(reason_chunks(reason)))


def metric_tag_key(metric_name: str) -> str:
    """The tag key of one final metric; raises ``ValueError`` if it cannot fit a tag key."""
    key = METRIC_TAG_PREFIX + encode(metric_name)
    if len(key) > MAX_TAG_KEY:
        raise ValueError(f"metric name {metric_name!r} is too long to record ({len(key)} > {MAX_TAG_KEY})")
    return key


def outcome_tags(
    status: str, failure_reason: str | None, final_metrics: Mapping[str, float]
) -> list[dict[str, str]]:
    """Tags that record a job's status, failure reason and final metrics."""
    tags = [{"Key": STATUS_TAG, "Value": status}]
    if failure_reason:
        tags.extend(
            {"Key": f"{FAILURE_REASON_TAG}:{index}", "Value": chunk}
            for index, chunk in enumerate(reason_chunks(failure_reason))
        )
    tags.extend({"Key": metric_tag_key(name), "Value": repr(value)} for name, value in final_metrics.items())
    return tags


def parse_outcome(
    tags: Iterable[Mapping[str, str]],
) -> tuple[str, str | None, dict[str, float]] | None:
    """Status, failure reason and final metrics recorded in ``tags``; ``None`` if none were recorded.

    The last tag of a key wins: moto appends on AddTags where AWS replaces.
    """
    values = {tag["Key"]: tag["Value"] for tag in tags if tag["Key"].startswith(TAG_PREFIX)}
    if STATUS_TAG not in values:
        return None
    chunks = sorted(
        (int(key.rsplit(":", 1)[1]), value)
        for key, value in values.items()
        if key.startswith(FAILURE_REASON_TAG + ":")
    )
    reason = decode("".join(chunk for _, chunk in chunks)) if chunks else None
    metrics = {
        decode(key[len(METRIC_TAG_PREFIX) :]): float(value)
        for key, value in values.items()
        if key.startswith(METRIC_TAG_PREFIX)
    }
    return values[STATUS_TAG], reason, metrics
