"""The local Lambda runtime's record of its invocations: one JSON line per attempt in
``invocations.jsonl`` (written by :mod:`emulator.lambdas`, read by ``mlctl local up`` to follow the
deployer), next to the functions' own logs (docs/local-platform.md).
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INVOCATIONS_FILE = "invocations.jsonl"
SUCCEEDED, FAILED = "succeeded", "failed"
RESULT_LIMIT_CHARS = 8192  # a larger handler answer is not kept in the record


@dataclass(frozen=True)
class InvocationRecord:
    """One attempt of one invocation: a line of ``invocations.jsonl``."""

    function: str
    request_id: str
    event_id: str
    detail_type: str
    resources: tuple[str, ...]
    attempt: int
    attempts_allowed: int
    outcome: str  # succeeded | failed
    started: str  # ISO 8601, UTC
    duration_ms: float
    log: str  # the function's log file
    result: Any = None  # the handler's answer (when small enough)
    error: str | None = None  # "ErrorType: message"
    sent_to: str | None = None  # the on-failure destination, after the last failed attempt

    @property
    def succeeded(self) -> bool:
        return self.outcome == SUCCEEDED

    @property
    def final(self) -> bool:
        """No attempt of this invocation follows."""
        return self.succeeded or self.attempt >= self.attempts_allowed

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def read_invocations(path: Path) -> list[InvocationRecord]:
    """Every record in ``path`` (a missing file has none), oldest first."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        with contextlib.suppress(ValueError, TypeError):
            document = json.loads(line)
            records.append(InvocationRecord(**{**document, "resources": tuple(document["resources"])}))
    return records


class InvocationLog:
    """Appends records to ``invocations.jsonl``, one whole line per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: InvocationRecord) -> None:
        with self._lock, self.path.open("a") as out:
            out.write(record.to_json() + "\n")
