"""Every process local mode starts is written down, so ``mlctl local down`` stops it whatever died
first (the emulator killed with SIGKILL leaves its model servers and jobs running otherwise).

The ledger is one file of JSON lines in the state folder; ``MLP_PROCESS_LEDGER`` names it for the
emulator and everything it starts. A line records a process's id and its start time, so a pid the
system has since reused is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LEDGER_ENV = "MLP_PROCESS_LEDGER"
LEDGER_FILE = "processes.jsonl"
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Recorded:
    pid: int
    role: str
    started: str  # /proc/<pid>/stat's start time: the same pid later is another process

    def running(self) -> bool:
        return start_time(self.pid) == self.started


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None when it runs no more (or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def record(pid: int, role: str, ledger: Path | None = None) -> None:
    """Write ``pid`` down in ``ledger`` (default: the one ``MLP_PROCESS_LEDGER`` names, if any)."""
    path = ledger or (Path(os.environ[LEDGER_ENV]) if os.environ.get(LEDGER_ENV) else None)
    started = start_time(pid)
    if path is None or started is None:
        return
    line = json.dumps({"pid": pid, "role": role, "started": started}) + "\n"
    # One write of one short line with O_APPEND: lines from several processes never interleave.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def recorded(ledger: Path) -> list[Recorded]:
    try:
        lines = ledger.read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            item = json.loads(line)
            entries.append(Recorded(int(item["pid"]), str(item["role"]), str(item["started"])))
    return entries


def stop_recorded(ledger: Path, timeout_s: float = STOP_TIMEOUT_S) -> list[Recorded]:
    """SIGTERM every recorded process still running (its whole group where it leads one), SIGKILL
    what remains after ``timeout_s``; then forget the ledger. Returns the processes it stopped."""
    running = [entry for entry in recorded(ledger) if entry.running()]
    for entry in running:
        _signal(entry.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(entry.running() for entry in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for entry in running:
        if entry.running():
            logger.warning("%s %d did not stop; killing it", entry.role, entry.pid)
            _signal(entry.pid, signal.SIGKILL)
    ledger.unlink(missing_ok=True)
    return running


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or not ours
        if os.getpgid(pid) == pid:
            os.killpg(pid, number)  # a server's workers, torchrun's ranks
        else:
            os.kill(pid, number)
