"""A local Lambda runtime: the functions the emulator holds run their real handlers, invoked
asynchronously as EventBridge invokes them (docs/local-platform.md).

For each invocation the function's configuration is read from the emulated Lambda API
(GetFunctionConfiguration, its reserved concurrency and its FunctionEventInvokeConfig), and its
``handler`` (``handlers.deployer.handler.lambda_handler``: a module path in the project) runs in a
fresh process of this Python (:mod:`emulator.lambda_bootstrap`) with exactly the function's
environment plus what Lambda's runtime sets (:func:`runtime_environment`): the emulator's endpoint
and placeholder credentials, never the user's. As for an asynchronous invoke in AWS:

- the caller gets control back at once; invocations run on background threads, at most the
  function's reserved concurrency at a time (the deployer's 1: one after another);
- a failed attempt (an error, a crash, the function's timeout) is retried up to
  ``MaximumRetryAttempts`` (default 2), sooner than AWS does (``retry_delays``); after the last,
  the failure record goes to the on-failure destination (an SNS topic);
- every attempt is one line of ``invocations.jsonl`` (:mod:`emulator.invocations`) in ``log_dir``,
  and the handler's output goes to ``<function>.log`` there, framed by START/END/REPORT lines.

Every process is written in the process ledger (:mod:`emulator.processes`), so ``mlctl local
down`` stops it even if the emulator dies; :meth:`LocalLambdaRuntime.stop` stops them too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator import processes
from emulator.invocations import (
    FAILED,
    INVOCATIONS_FILE,
    RESULT_LIMIT_CHARS,
    SUCCEEDED,
    InvocationLog,
    InvocationRecord,
)
from emulator.isolation import EMULATOR_CREDENTIALS, without_user_aws
from infra.stack_config import project_root

logger = logging.getLogger(__name__)

BOOTSTRAP = "emulator.lambda_bootstrap"
DEFAULT_MAX_RETRIES = 2  # Lambda's default for asynchronous invocations
RETRY_DELAYS_S = (1.0, 2.0)  # AWS waits about one, then two minutes
UNRESERVED_CONCURRENCY = 4
LAMBDA_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
STOP_TIMEOUT_S = 10.0


# --- the function, as the emulated Lambda API holds it ------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """What one invocation of a function needs."""

    name: str
    arn: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: float
    environment: Mapping[str, str]
    concurrency: int = UNRESERVED_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    on_failure: str | None = None


def read_function(client: Any, function: str) -> FunctionSpec:
    """The function's configuration, reserved concurrency and asynchronous invoke settings."""
    config = client.get_function_configuration(FunctionName=function)
    name = str(config["FunctionName"])
    reserved = client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
    try:
        invoke_config = client.get_function_event_invoke_config(FunctionName=name)
    except client.exceptions.ResourceNotFoundException:
        invoke_config = {}
    return FunctionSpec(
        name=name,
        arn=str(config["FunctionArn"]),
        handler=str(config["Handler"]),
        runtime=str(config.get("Runtime") or "python3.11"),
        memory_mb=int(config.get("MemorySize") or 128),
        timeout_s=float(config.get("Timeout") or 3),
        environment=dict((config.get("Environment") or {}).get("Variables") or {}),
        concurrency=int(reserved) if reserved else UNRESERVED_CONCURRENCY,
        max_retries=int(invoke_config.get("MaximumRetryAttempts", DEFAULT_MAX_RETRIES)),
        on_failure=(invoke_config.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination"),
    )


def runtime_environment(spec: FunctionSpec, *, region: str, aws_url: str, task_root: Path) -> dict[str, str]:
    """The function's environment: its own variables, then those Lambda's runtime sets, pointed at
    the emulator. Built from nothing, so nothing of the caller's environment (the user's AWS
    identity least of all) reaches the handler."""
    return {
        **spec.environment,
        # No profile, SSO or credentials file of the user's: the emulator's own keys.
        **without_user_aws({}),
        "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIALS.access_key_id,
        "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIALS.secret_access_key,
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        # As AWS SAM's local runtime says it: Powertools' Tracer then sends to no X-Ray daemon.
        "AWS_SAM_LOCAL": "true",
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(task_root),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": LAMBDA_PATH,
        "PYTHONPATH": str(task_root),
    }


# --- the runtime -------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """One asynchronous invocation: the same request id for all its attempts, as in AWS."""

    function: str
    event: dict[str, Any]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class AttemptOutcome:
    result: Any = None
    error: dict[str, Any] | None = None  # Lambda's errorType / errorMessage / stackTrace
    duration_ms: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.error is None


class LocalLambdaRuntime:
    """Runs invocations of the functions the emulated Lambda API holds (see the module docstring).

    Parameters: ``clients(service)`` makes a boto3 client of the emulator (``lambda`` and ``sns``
    are used); ``region`` and ``aws_url`` are what the handlers get; ``log_dir`` holds the
    invocation log and the functions' logs; ``task_root`` is where handler modules are imported
    from (the project); ``retry_delays`` are the waits before the second and third attempts.
    """

    def __init__(
        self,
        clients: Callable[[str], Any],
        *,
        region: str,
        aws_url: str,
        log_dir: Path,
        task_root: Path | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    ) -> None:
        self._lambda = clients("lambda")
        self._sns = clients("sns")
        self._region = region
        self._aws_url = aws_url
        self._log_dir = log_dir
        self._task_root = task_root or project_root()
        self._retry_delays = retry_delays
        self._log_dir.mkdir(parents=True, exist_ok=True)
        (self._log_dir / "results").mkdir(exist_ok=True)
        self.invocations = InvocationLog(log_dir / INVOCATIONS_FILE)
        self._queues: dict[str, queue.Queue[Invocation | None]] = {}
        self._threads: list[threading.Thread] = []
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def invoke_async(self, function: str, event: Mapping[str, Any]) -> str:
        """Queue one invocation of ``function`` (name or ARN); returns its request id at once."""
        invocation = Invocation(function, json.loads(json.dumps(event)))
        if self._stopping.is_set():
            logger.warning("runtime stopping: %s not invoked for event %s", function, event.get("id"))
            return invocation.request_id
        self._queue_of(function).put(invocation)
        return invocation.request_id

    def invoke_sync(self, function: str, event: Mapping[str, Any]) -> AttemptOutcome:
        """One ``RequestResponse`` invocation: one attempt, no retry, the answer or the error to
        the caller (as Lambda's Invoke). Raises ClientError for an unknown function."""
        spec = read_function(self._lambda, function)
        invocation = Invocation(function, json.loads(json.dumps(event)))
        outcome = self._attempt(spec, invocation)
        self._write_down(self._record(spec, invocation, outcome, attempt=1, attempts=1, sent_to=None))
        return outcome

    def stop(self) -> None:
        """Stop taking invocations, stop the running handlers, wait for the workers."""
        self._stopping.set()
        with self._lock:
            for pending in self._queues.values():
                pending.put(None)
            running = list(self._running.values())
        for process in running:
            _kill(process)
        for thread in list(self._threads):
            thread.join(STOP_TIMEOUT_S)

    # --- dispatching ---------------------------------------------------------------------------------------

    def _queue_of(self, function: str) -> queue.Queue[Invocation | None]:
        key = function.split(":function:", 1)[-1].split(":", 1)[0]  # the name, from a name or an ARN
        with self._lock:
            if key not in self._queues:
                self._queues[key] = queue.Queue()
                self._start_thread(self._dispatch, (self._queues[key],), f"lambda-{key}")
            return self._queues[key]

    def _start_thread(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        """Start a worker thread (the caller holds the lock); ended ones are forgotten."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _dispatch(self, pending: queue.Queue[Invocation | None]) -> None:
        """Take one function's invocations in order; run each once a concurrency slot is free."""
        slots: threading.Semaphore | None = None
        while (invocation := pending.get()) is not None and not self._stopping.is_set():
            try:
                spec = read_function(self._lambda, invocation.function)
            except Exception:  # a target whose function is gone: EventBridge's delivery fails
                logger.exception("cannot invoke %s", invocation.function)
                continue
            slots = slots or threading.Semaphore(spec.concurrency)
            slots.acquire()
            with self._lock:
                self._start_thread(self._invoke, (spec, invocation, slots), f"lambda-{spec.name}-run")

    def _invoke(self, spec: FunctionSpec, invocation: Invocation, slots: threading.Semaphore) -> None:
        """All attempts of one invocation, then the on-failure destination if none succeeded."""
        try:
            attempts = spec.max_retries + 1
            for attempt in range(1, attempts + 1):
                delay = self._retry_delay(attempt) if attempt > 1 else 0.0
                if self._stopping.wait(delay):
                    return  # stopping: what is left of the invocation is dropped
                outcome = self._attempt(spec, invocation)
                last = outcome.succeeded or attempt == attempts
                sent_to = self._send_failure(spec, invocation, outcome, attempt) if last else None
                record = self._record(
                    spec, invocation, outcome, attempt=attempt, attempts=attempts, sent_to=sent_to
                )
                self._write_down(record)
                if last:
                    return
        finally:
            slots.release()

    def _write_down(self, record: InvocationRecord) -> None:
        """The attempt in ``invocations.jsonl``, and a line in the emulator's log."""
        self.invocations.append(record)
        outcome = f"{record.outcome}: {record.error}" if record.error else record.outcome
        logger.info(
            "lambda %s request %s attempt %d/%d %s (%.0f ms)",
            record.function, record.request_id, record.attempt, record.attempts_allowed, outcome,
            record.duration_ms,
        )  # fmt: skip

    def _retry_delay(self, attempt: int) -> float:
        delays = self._retry_delays or (0.0,)
        return delays[min(attempt - 2, len(delays) - 1)]

    # --- one attempt: one process --------------------------------------------------------------------------

    def _attempt(self, spec: FunctionSpec, invocation: Invocation) -> AttemptOutcome:
        request_id = invocation.request_id
        result_file = self._log_dir / "results" / f"{request_id}-{uuid.uuid4().hex[:8]}.json"
        deadline_ms = int((time.time() + spec.timeout_s) * 1000)
        command = [sys.executable, "-m", BOOTSTRAP, spec.handler, request_id, spec.arn]
        command += [str(deadline_ms), str(result_file)]
        environment = runtime_environment(
            spec, region=self._region, aws_url=self._aws_url, task_root=self._task_root
        )
        started = time.monotonic()
        with self._log_file(spec) as log:
            log.write(f"START RequestId: {request_id} Version: $LATEST\n".encode())
            log.flush()
            exit_code = self._run_process(
                spec, command, environment, log, json.dumps(invocation.event).encode()
            )
            duration_ms = (time.monotonic() - started) * 1000.0
            log.write(f"END RequestId: {request_id}\n".encode())
            log.write(f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\n".encode())
        answer = _read_answer(result_file)
        error = answer.get("error") or self._runtime_error(spec, request_id, exit_code, answer)
        return AttemptOutcome(result=answer.get("result"), error=error, duration_ms=duration_ms)

    @contextlib.contextmanager
    def _log_file(self, spec: FunctionSpec) -> Iterator[Any]:
        with (self._log_dir / f"{spec.name}.log").open("ab") as log:
            yield log

    def _run_process(
        self, spec: FunctionSpec, command: list[str], environment: dict[str, str], log: Any, payload: bytes
    ) -> int | None:
        """Run the handler's process to its end or the function's timeout; its exit code, None if
        it timed out."""
        process = subprocess.Popen(
            command,
            cwd=self._task_root,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a timeout or `down` stops all it started
        )
        processes.record(process.pid, f"lambda {spec.name}")
        with self._lock:
            self._running[process.pid] = process
            if self._stopping.is_set():  # started while stop() was stopping the others
                _kill(process)
        try:
            process.communicate(payload, timeout=spec.timeout_s)
            return process.returncode
        except subprocess.TimeoutExpired:
            _kill(process)
            return None
        finally:
            with self._lock:
                self._running.pop(process.pid, None)

    def _runtime_error(
        self, spec: FunctionSpec, request_id: str, exit_code: int | None, answer: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Lambda's error for an attempt that gave no answer: a timeout, or a process that died."""
        if exit_code is None:
            message = f"Task timed out after {spec.timeout_s:.2f} seconds"
            return {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: {message}",
            }
        if "result" in answer:
            return None
        cause = "stopped with the local platform" if self._stopping.is_set() else f"exit status {exit_code}"
        message = f"RequestId: {request_id} Error: Runtime exited with error: {cause}"
        return {"errorType": "Runtime.ExitError", "errorMessage": message}

    # --- after the attempt ---------------------------------------------------------------------------------

    def _record(
        self,
        spec: FunctionSpec,
        invocation: Invocation,
        outcome: AttemptOutcome,
        *,
        attempt: int,
        attempts: int,
        sent_to: str | None,
    ) -> InvocationRecord:
        event = invocation.event
        result = (
            outcome.result if len(json.dumps(outcome.result, default=str)) <= RESULT_LIMIT_CHARS else None
        )
        error = outcome.error
        return InvocationRecord(
            function=spec.name,
            request_id=invocation.request_id,
            event_id=str(event.get("id", "")),
            detail_type=str(event.get("detail-type", "")),
            resources=tuple(str(r) for r in event.get("resources", [])),
            attempt=attempt,
            attempts_allowed=attempts,
            outcome=SUCCEEDED if outcome.succeeded else FAILED,
            started=datetime.now(UTC).isoformat(timespec="milliseconds"),
            duration_ms=round(outcome.duration_ms, 1),
            log=str(self._log_dir / f"{spec.name}.log"),
            result=result,
            error=f"{error.get('errorType')}: {error.get('errorMessage')}" if error else None,
            sent_to=sent_to,
        )

    def _send_failure(
        self, spec: FunctionSpec, invocation: Invocation, outcome: AttemptOutcome, attempts: int
    ) -> str | None:
        """After the last failed attempt: Lambda's failure record to the on-failure destination."""
        if outcome.succeeded or not spec.on_failure or self._stopping.is_set():
            return None
        if ":sns:" not in spec.on_failure:
            logger.warning("%s: on-failure destination %s is not emulated", spec.name, spec.on_failure)
            return None
        record = failure_record(spec, invocation, outcome, attempts)
        try:
            self._sns.publish(TopicArn=spec.on_failure, Message=json.dumps(record, default=str))
        except Exception:  # the record is lost, as when a destination refuses it; the log says so
            logger.exception("%s: publishing the failure record to %s failed", spec.name, spec.on_failure)
            return None
        return spec.on_failure


def failure_record(
    spec: FunctionSpec, invocation: Invocation, outcome: AttemptOutcome, attempts: int
) -> dict[str, Any]:
    """What Lambda sends to an on-failure destination when the retries are exhausted."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": f"{spec.arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": invocation.event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": outcome.error,
    }


def _read_answer(result_file: Path) -> dict[str, Any]:
    """The bootstrap's answer ({} when the process wrote none); the file is removed."""
    try:
        answer = json.loads(result_file.read_text())
    except (OSError, ValueError):
        answer = {}
    finally:
        result_file.unlink(missing_ok=True)
    return answer if isinstance(answer, dict) else {}


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the handler's process group (Lambda freezes and discards a timed-out sandbox)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
