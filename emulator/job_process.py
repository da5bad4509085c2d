"""A job's process on this machine: streamed logs, metric parsing and the runtime limit (training and
processing jobs alike)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from emulator import processes

logger = logging.getLogger(__name__)

LogCallback = Callable[[str], None]

# Lines of stderr kept for the failure reason when the job wrote no failure file.
STDERR_TAIL_LINES = 20
# How long the readers may drain the pipes after the process group has gone.
_READER_JOIN_SECONDS = 5.0


class MetricParser:
    """SageMaker's metric extraction: each definition's regex is searched in every log line and
    its first group is the value; the final value of a metric is the last one seen."""

    def __init__(self, definitions: Sequence[Mapping[str, str]]) -> None:
        self._patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
        self.final: dict[str, float] = {}

    def feed(self, line: str) -> None:
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if match is None:
                continue
            with contextlib.suppress(ValueError, IndexError, TypeError):
                self.final[name] = float(match.group(1))


@dataclass
class ProcessOutcome:
    """How the job's process ended."""

    exit_code: int
    timed_out: bool
    stderr_tail: list[str] = field(default_factory=list)


@dataclass
class _Stream:
    """Serialises what both pipes produce into the log file, the callback and the parser."""

    log: IO[str]
    on_line: LogCallback | None
    metrics: MetricParser
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def consume(self, pipe: IO[bytes], is_stderr: bool) -> None:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self.lock:
                self.log.write(line + "\n")
                self.log.flush()
                self.metrics.feed(line)
                if is_stderr:
                    self.stderr_tail.append(line)
                self._notify(line)

    def _notify(self, line: str) -> None:
        if self.on_line is None:
            return
        try:
            self.on_line(line)
        except Exception:
            # A broken progress display must not stall the pipe and with it the training job.
            logger.exception("log callback failed; no further lines are sent to it")
            self.on_line = None


def run_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    metrics: MetricParser,
    max_runtime_seconds: float,
    stop_grace_seconds: float,
    on_line: LogCallback | None = None,
) -> ProcessOutcome:
    """Run ``command`` in its own process group until it exits or its runtime runs out.

    Like SageMaker, a job past its runtime gets SIGTERM, then SIGKILL after the grace period
    (SageMaker waits 120 s) so it can still save a checkpoint.
    """
    with log_path.open("w", encoding="utf-8") as log:
        stream = _Stream(log=log, on_line=on_line, metrics=metrics)
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own session, so the runtime limit reaches torchrun's workers too.
            start_new_session=True,
        )
        processes.record(process.pid, "job")
        readers = [
            threading.Thread(target=stream.consume, args=(pipe, is_err), daemon=True)
            for pipe, is_err in ((process.stdout, False), (process.stderr, True))
        ]
        for reader in readers:
            reader.start()
        timed_out = _wait_or_stop(process, max_runtime_seconds, stop_grace_seconds)
        for reader in readers:
            reader.join(_READER_JOIN_SECONDS)
        with stream.lock:
            tail = list(stream.stderr_tail)
    return ProcessOutcome(exit_code=process.returncode, timed_out=timed_out, stderr_tail=tail)


def _wait_or_stop(process: subprocess.Popen[bytes], runtime: float, grace: float) -> bool:
    """Wait for ``process``; past ``runtime`` stop its group. Returns whether it was stopped."""
    try:
        process.wait(timeout=runtime)
        return False
    except subprocess.TimeoutExpired:
        pass
    except BaseException:
        # Ctrl-C (or any error) in the runner must not leave the training processes behind.
        _signal_group(process, signal.SIGKILL)
        process.wait()
        raise
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()
    # Workers that ignored SIGTERM after their parent exited still go.
    _signal_group(process, signal.SIGKILL)
    return True


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
