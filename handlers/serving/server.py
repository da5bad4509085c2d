"""The model server of the bring-your-own-container path and of local mode.

``python -m handlers.serving.server --model-dir PATH_OR_TARGZ`` serves an artifact in the SageMaker
PyTorch layout with the SageMaker container contract (``/ping``, ``/invocations`` and ``/metrics``),
worker processes and dynamic batching. Options, settings and shutdown: docs/serving.md. An
artifact's ``code/requirements.txt`` is installed first (``handlers.serving.requirements``).

``python -m handlers.serving.server check --model-dir PATH_OR_TARGZ --request FILE`` loads the
artifact as a worker does and answers the one JSON request in FILE (``-``: stdin) without listening:
the answer on stdout and exit 0, or one line ``model_server check: <why>`` on stderr and exit 1
(the request failed) or 3 (the artifact did not load). ``mlctl models register`` runs it before
anything is uploaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from handlers.common.contracts import MAX_PAYLOAD_MB
from handlers.serving.device import (
    AUTO,
    DEVICE_VARIABLE,
    DEVICES,
    VISIBLE_DEVICES,
    WORKERS_PER_GPU_VARIABLE,
    DeviceError,
    count_gpus,
    plan_placement,
)
from handlers.serving.precision import (
    FLOAT32,
    PRECISION_VARIABLE,
    PRECISIONS,
    PrecisionError,
    check_precision,
)
from handlers.serving.protocol import DEFAULT_READ_TIMEOUT_S, ReadTimeoutProtocol
from handlers.serving.requirements import RequirementsError, install_requirements, requirements_file

logger = logging.getLogger("handlers.serving.server")

# The SageMaker inference container's variables (sagemaker-inference-toolkit parameters.py).
SM_MODEL_DIR = "SM_MODEL_DIR"
BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
MODEL_SERVER_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
MODEL_SERVER_TIMEOUT = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
MAX_PAYLOAD_IN_MB = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
DEFAULT_INVOCATIONS_ACCEPT = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
PROGRAM = "SAGEMAKER_PROGRAM"
READ_TIMEOUT = "MODEL_SERVER_READ_TIMEOUT"  # ours: seconds a client has to send a whole request
EMF_INTERVAL = "MLP_EMF_INTERVAL_S"  # ours: seconds between CloudWatch EMF lines on stdout; 0: none
# prometheus_client's multiprocess folder, one per run (metrics.MULTIPROC_DIR_ENV; not imported from
# there: that module loads prometheus_client, which must not load before this is set).
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The platform's own (handlers/serving/device.py and precision.py name theirs).
WARMUP_VARIABLE = "MODEL_SERVER_WARMUP"  # 0: no warm-up passes before /ping turns healthy

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_PAYLOAD_MB = float(MAX_PAYLOAD_MB)  # the one limit the built-in handler and the API share
CONTAINER_EMF_INTERVAL_S = 60.0  # EMF lines in the container (started as `serve`); none otherwise
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOAD_FAILED = 3
CHECK_PREFIX = "model_server check:"


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server runs with, resolved once (arguments > environment > defaults)."""

    model_dir: str = DEFAULT_MODEL_DIR
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    max_batch_size: int = 32
    max_batch_delay_ms: float = 5.0
    batching: bool = True
    torch_threads: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_payload_mb: float = DEFAULT_MAX_PAYLOAD_MB
    graceful_timeout_s: float = 30.0
    default_accept: str = "application/json"
    program: str = "inference.py"
    log_level: str = "info"
    access_log: bool = False
    emf_interval_s: float = 0.0
    device: str = "cpu"  # resolved: cpu or cuda (handlers/serving/device.py)
    workers_per_gpu: int = 1
    # Each worker's CUDA_VISIBLE_DEVICES, set before it loads torch (None: inherited as it is).
    visible_devices: tuple[str | None, ...] = ()
    precision: str = FLOAT32
    warmup: bool = True

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names it."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m handlers.serving.server",
        description="Serve a SageMaker PyTorch model artifact over HTTP (/ping, /invocations, /metrics).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "check"],
        help="serve (accepted for `docker run IMAGE serve`), or check: load and answer --request once",
    )
    parser.add_argument("--request", default="-", help="check: the JSON request to answer (a file; -: stdin)")
    parser.add_argument("--model-dir", help=f"folder or model.tar.gz (${SM_MODEL_DIR}, {DEFAULT_MODEL_DIR})")
    parser.add_argument("--host", help="listen address (127.0.0.1; the container passes 0.0.0.0)")
    parser.add_argument("--port", type=int, help=f"listen port (${BIND_TO_PORT}, {DEFAULT_PORT})")
    parser.add_argument(
        "--workers", type=int, help=f"worker processes (${MODEL_SERVER_WORKERS}; 1, on CUDA GPUs x per GPU)"
    )
    parser.add_argument("--max-batch-size", type=int, help="rows per forward pass (32)")
    parser.add_argument("--max-batch-delay-ms", type=float, help="longest wait to fill a batch (5)")
    parser.add_argument("--no-batching", action="store_true", help="one request per forward pass")
    parser.add_argument("--torch-threads", type=int, help="intra-op threads per worker (cores / workers)")
    parser.add_argument("--timeout", type=float, help=f"seconds per request (${MODEL_SERVER_TIMEOUT}, 60)")
    parser.add_argument(
        "--read-timeout", type=float, help=f"seconds to send a whole request (${READ_TIMEOUT}, 10)"
    )
    parser.add_argument("--max-payload-mb", type=float, help=f"body limit in MB (${MAX_PAYLOAD_IN_MB}, 6)")
    parser.add_argument("--graceful-timeout", type=float, help="seconds to finish requests on SIGTERM (30)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="(info)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--emf-interval",
        type=float,
        help=f"seconds between CloudWatch EMF metric lines on stdout, 0: none (${EMF_INTERVAL}; "
        f"{CONTAINER_EMF_INTERVAL_S:g} when started as `serve`, as SageMaker starts the container, else 0)",
    )
    parser.add_argument("--device", choices=DEVICES, help=f"where the model runs (${DEVICE_VARIABLE}, auto)")
    parser.add_argument(
        "--workers-per-gpu", type=int, help=f"workers (model copies) per GPU (${WORKERS_PER_GPU_VARIABLE}, 1)"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, help=f"autocast predict_fn (${PRECISION_VARIABLE}, float32)"
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help=f"skip the warm-up passes (${WARMUP_VARIABLE}=0)"
    )
    return parser.parse_args(argv)


def resolve_settings(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    gpu_count: Callable[[], int] | None = None,
) -> ServerSettings:
    """Arguments beat the SageMaker environment, which beats the defaults.

    Parameters: ``args`` from ``parse_args``; ``environ`` defaults to ``os.environ``; ``gpu_count``
    counts the GPUs torch sees (``device.count_gpus``; never called for a cpu device).
    Returns: the settings. Raises ``SettingsError`` naming a bad value.
    """
    env = os.environ if environ is None else environ
    defaults = ServerSettings()

    def pick(explicit: Any, variable: str | None, default: Any, kind: type) -> Any:
        if explicit is not None:
            return explicit
        raw = env.get(variable, "").strip() if variable else ""
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not a valid {kind.__name__}") from None

    requested = pick(args.device, DEVICE_VARIABLE, AUTO, str).lower()
    workers_per_gpu = pick(args.workers_per_gpu, WORKERS_PER_GPU_VARIABLE, defaults.workers_per_gpu, int)
    gpus = 0 if requested == "cpu" else (gpu_count or (lambda: count_gpus(env)))()
    try:
        placement = plan_placement(
            requested,
            gpus,
            workers=pick(args.workers, MODEL_SERVER_WORKERS, None, int),
            workers_per_gpu=workers_per_gpu,
            visible=env.get(VISIBLE_DEVICES),
        )
        precision = check_precision(pick(args.precision, PRECISION_VARIABLE, FLOAT32, str).lower())
    except (DeviceError, PrecisionError) as exc:
        raise SettingsError(str(exc)) from None
    workers = placement.workers
    settings = ServerSettings(
        model_dir=pick(args.model_dir, SM_MODEL_DIR, defaults.model_dir, str),
        host=args.host or defaults.host,
        port=pick(args.port, BIND_TO_PORT, defaults.port, int),
        workers=workers,
        max_batch_size=pick(args.max_batch_size, None, defaults.max_batch_size, int),
        max_batch_delay_ms=pick(args.max_batch_delay_ms, None, defaults.max_batch_delay_ms, float),
        batching=not args.no_batching,
        torch_threads=args.torch_threads or max(1, _cores() // max(1, workers)),
        timeout_s=pick(args.timeout, MODEL_SERVER_TIMEOUT, defaults.timeout_s, float),
        read_timeout_s=pick(args.read_timeout, READ_TIMEOUT, defaults.read_timeout_s, float),
        max_payload_mb=pick(args.max_payload_mb, MAX_PAYLOAD_IN_MB, defaults.max_payload_mb, float),
        graceful_timeout_s=pick(args.graceful_timeout, None, defaults.graceful_timeout_s, float),
        default_accept=pick(None, DEFAULT_INVOCATIONS_ACCEPT, defaults.default_accept, str),
        program=pick(None, PROGRAM, defaults.program, str),
        log_level=args.log_level or defaults.log_level,
        access_log=bool(args.access_log),
        emf_interval_s=pick(
            args.emf_interval,
            EMF_INTERVAL,
            CONTAINER_EMF_INTERVAL_S if args.command == "serve" else defaults.emf_interval_s,
            float,
        ),
        device=placement.device,
        workers_per_gpu=workers_per_gpu,
        visible_devices=placement.visible_devices,
        precision=precision,
        warmup=False if args.no_warmup else _switch(env, WARMUP_VARIABLE, default=True),
    )
    for name, value, low in (
        ("port", settings.port, 0),
        ("workers", settings.workers, 1),
        ("max batch size", settings.max_batch_size, 1),
        ("torch threads", settings.torch_threads, 1),
    ):
        if value < low:
            raise SettingsError(f"{name} must be at least {low}; got {value}")
    if settings.max_batch_delay_ms < 0 or settings.timeout_s <= 0 or settings.max_payload_mb <= 0:
        raise SettingsError("batch delay must be >= 0; timeout and payload limit must be > 0")
    if settings.read_timeout_s <= 0:
        raise SettingsError(f"read timeout must be > 0; got {settings.read_timeout_s:g}")
    if not settings.emf_interval_s >= 0:  # also refuses nan
        raise SettingsError(
            f"EMF interval ({EMF_INTERVAL}, --emf-interval) must be >= 0; got {settings.emf_interval_s}"
        )
    return settings


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(env: Mapping[str, str], variable: str, *, default: bool) -> bool:
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw not in _ON + _OFF:
        raise SettingsError(f"{variable}={raw!r} is not one of {', '.join(_ON + _OFF)}")
    return raw in _ON


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT (or, for ``check``, answer one request); returns the
    process exit code."""
    try:
        args = parse_args(argv)
        settings = resolve_settings(args)
    except SettingsError as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    checking = args.command == "check"
    _configure_logging("warning" if checking and not args.log_level else settings.log_level)
    with contextlib.ExitStack() as stack:
        try:
            model_dir = prepare_model_dir(Path(settings.model_dir), stack)
            install_model_requirements(model_dir, stack)
        except (FileNotFoundError, tarfile.TarError, RequirementsError) as exc:
            if checking:
                return _check_failed(str(exc), EXIT_LOAD_FAILED)
            logger.error("cannot serve %s: %s", settings.model_dir, exc)
            return EXIT_LOAD_FAILED if isinstance(exc, RequirementsError) else EXIT_USAGE
        if checking:
            pin_worker(settings, 0)
            return check_model(settings, model_dir, args.request)
        logger.info(
            "serving %s on %s:%d (%d worker(s) x %d torch thread(s), batching %s) on %s",
            settings.model_dir,
            settings.host,
            settings.port,
            settings.workers,
            settings.torch_threads,
            f"up to {settings.max_batch_size} rows" if settings.batching else "off",
            _placement_text(settings),
        )
        limit_native_threads(settings.torch_threads)
        prepare_metrics_dir(stack)
        if settings.workers == 1:
            pin_worker(settings, 0)
            return run_worker(settings, model_dir)
        return _supervise(settings, model_dir)


def pin_worker(settings: ServerSettings, index: int) -> None:
    """Give this process worker ``index``'s ``CUDA_VISIBLE_DEVICES`` (before it imports torch), so
    ``cuda`` in it means its GPU; a worker forced onto the CPU sees none."""
    if index < len(settings.visible_devices):
        visible = settings.visible_devices[index]
        if visible is not None:
            os.environ[VISIBLE_DEVICES] = visible


def _placement_text(settings: ServerSettings) -> str:
    text = f"{settings.device}, {settings.precision}"
    gpus = {gpu for gpu in settings.visible_devices if gpu}
    if gpus:
        text += f", {len(gpus)} GPU(s): CUDA_VISIBLE_DEVICES of each worker {list(settings.visible_devices)}"
    return text


def install_model_requirements(model_dir: Path, stack: contextlib.ExitStack) -> None:
    """Install the artifact's ``code/requirements.txt`` into a private folder (removed when ``stack``
    closes) at the front of ``sys.path``, before any worker imports the inference module (spawned
    workers inherit ``sys.path``)."""
    if requirements_file(model_dir) is None:
        return
    target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="model-requirements-")))
    install_requirements(model_dir, target)
    logger.info("installed code/requirements.txt into %s", target)


def check_model(settings: ServerSettings, model_dir: Path, request: str) -> int:
    """Load the artifact with a worker's own code and answer one JSON request, no socket opened."""
    from handlers.serving.app import AppOptions, ModelService  # noqa: PLC0415 - loads torch
    from handlers.serving.artifact import JSON, ServingError  # noqa: PLC0415

    try:
        body = sys.stdin.buffer.read() if request == "-" else Path(request).read_bytes()
    except OSError as exc:
        return _check_failed(f"cannot read the request: {exc}", EXIT_USAGE)
    service = ModelService(
        AppOptions(
            model_dir=model_dir,
            program=settings.program,
            batching=False,
            threads=2,
            precision=settings.precision,
            warmup=settings.warmup,
        )
    )
    try:
        service.load()
    except Exception as exc:  # whatever the artifact's code raises is the reason it cannot serve
        return _check_failed(f"the model did not load: {_one_line(exc)}", EXIT_LOAD_FAILED)
    try:
        with ThreadPoolExecutor(max_workers=2) as executor:
            answer = asyncio.run(service.predict(body, JSON, JSON, executor))
    except ServingError as exc:
        return _check_failed(f"the request was answered HTTP {exc.status_code}: {exc.message}", EXIT_FAILED)
    except Exception as exc:
        return _check_failed(f"the request failed: {_one_line(exc)}", EXIT_FAILED)
    finally:
        if service.batcher is not None:
            service.batcher.close(timeout=5.0)
    sys.stdout.buffer.write(answer.body + b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _check_failed(reason: str, code: int) -> int:
    print(f"{CHECK_PREFIX} {' '.join(reason.split())}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_native_threads(threads: int) -> None:
    """Size the OpenMP/BLAS thread pools to the worker's torch threads (unless set already).

    The pools read these variables once, when torch and numpy load, so they are set before any
    worker imports either. ``torch.set_num_threads`` alone leaves a pool sized to the machine,
    whose spinning threads starved the other workers: 2 workers x 1 thread served ~600 rps at 16
    callers without this and ~4,300 with it (docs/serving-benchmark.md).
    """
    for name in NATIVE_THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def prepare_metrics_dir(stack: contextlib.ExitStack) -> Path:
    """A private folder (0700, removed when ``stack`` closes) for the workers' prometheus_client
    files, named in ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus_client (it
    reads the variable once, at import; spawned workers inherit it). A lone worker uses it too, so
    ``/metrics`` reads the same way whatever the worker count. One inherited from the caller is
    replaced: another run's files would be summed with ours."""
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="model-server-metrics-")))
    os.environ[METRICS_DIR] = str(path)
    return path


def _forget_worker(pid: int | None) -> None:
    """Drop a dead worker's live gauges (in flight, queued, ready, workers); its counters stay."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only once the folder is set

    if pid is not None:
        multiprocess.mark_process_dead(pid)


def prepare_model_dir(path: Path, stack: contextlib.ExitStack) -> Path:
    """The folder to serve: ``path`` itself, or a ``.tar.gz`` extracted into a temporary folder
    (removed when ``stack`` closes)."""
    if path.is_dir():
        return path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="model-server-")))
    with tarfile.open(path, "r:*") as archive:
        archive.extractall(target, filter="data")
    logger.info("extracted %s into %s", path, target)
    return target


class _Server(uvicorn.Server):
    """uvicorn's server, which also marks the app draining (``/ping`` 503) on SIGTERM/SIGINT and
    exits normally after a graceful shutdown instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, service: Any) -> None:
        super().__init__(config)
        self._service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._service.draining = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    def stop(self) -> None:
        self.should_exit = True


def run_worker(
    settings: ServerSettings,
    model_dir: Path,
    *,
    parent_pid: int | None = None,
    in_flight: Any | None = None,
) -> int:
    """One worker: the app on uvicorn. Alone (no ``parent_pid``) it listens at once and loads the
    model in the background (``/ping`` 503 meanwhile). Under a supervisor it loads the model first
    and only then opens its SO_REUSEPORT socket, so no connection reaches a worker that is not
    ready; it also shuts down gracefully if the supervisor disappears."""
    import torch  # noqa: PLC0415 - only workers pay for torch

    from handlers.serving.app import AppOptions, create_app  # noqa: PLC0415

    if settings.device == "cuda" and not torch.cuda.is_available():
        logger.critical(
            "the device is cuda, but torch sees no GPU in this worker (%s=%r)",
            VISIBLE_DEVICES,
            os.environ.get(VISIBLE_DEVICES),
        )
        return EXIT_LOAD_FAILED
    torch.set_num_threads(settings.torch_threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(1)
    stopper: list[_Server] = []
    options = AppOptions(
        model_dir=model_dir,
        program=settings.program,
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        max_body_bytes=settings.max_body_bytes,
        request_timeout_s=settings.timeout_s,
        default_accept=settings.default_accept,
        threads=max(16, min(128, 2 * settings.max_batch_size)),
        torch_threads=settings.torch_threads,
        spare_threads=_cores(),
        in_flight=in_flight,
        emf_interval_s=settings.emf_interval_s,
        precision=settings.precision,
        warmup=settings.warmup,
    )
    app = create_app(options, on_fatal=lambda: stopper[0].stop() if stopper else None)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        http=ReadTimeoutProtocol.with_timeout(settings.read_timeout_s),
        log_config=None,
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
        server_header=False,
        proxy_headers=False,  # no proxy in front of the container: skip the per-request middleware
    )
    server = _Server(config, app.state.service)
    stopper.append(server)
    sockets: list[socket.socket] | None = None
    if parent_pid is not None:
        try:
            app.state.service.load()
        except Exception:
            logger.critical("the model could not be loaded; stopping", exc_info=True)
            return EXIT_LOAD_FAILED
        try:
            sockets = [_bind(settings.host, settings.port, reuse_port=True)]
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
            return EXIT_LOAD_FAILED
        threading.Thread(target=_stop_when_orphaned, args=(server, parent_pid), daemon=True).start()
    server.run(sockets=sockets)
    if app.state.service.load_error is not None:
        return EXIT_LOAD_FAILED
    return EXIT_OK if server.started else EXIT_FAILED


def _worker_process(settings: ServerSettings, model_dir: str, in_flight: Any, index: int) -> None:
    pin_worker(settings, index)  # first: nothing has loaded torch in this fresh (spawned) process yet
    _configure_logging(settings.log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):  # stopped while loading: nothing in flight yet
        signal.signal(sig, _exit_cleanly)
    sys.exit(run_worker(settings, Path(model_dir), parent_pid=os.getppid(), in_flight=in_flight))


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(EXIT_OK)


def _stop_when_orphaned(server: _Server, parent_pid: int) -> None:
    while not server.should_exit:
        if os.getppid() != parent_pid:  # the supervisor died without stopping us (e.g. SIGKILL)
            logger.warning("supervisor %d is gone; shutting down", parent_pid)
            server.handle_exit(signal.SIGTERM, None)
            return
        time.sleep(1.0)


def _supervise(settings: ServerSettings, model_dir: Path) -> int:
    """N workers, each with its own SO_REUSEPORT socket on the port (the kernel spreads new
    connections evenly; one shared socket lets whichever worker wakes first take a whole burst).
    Restarts a worker that dies; stops all on SIGTERM/SIGINT."""
    try:  # fail fast if another program already listens there (SO_REUSEPORT would share it)
        _bind(settings.host, settings.port, reuse_port=False).close()
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return EXIT_FAILED
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
    stop = threading.Event()
    in_flight = context.Value("i", 0)  # requests in flight on all workers (handlers/serving/threads.py)

    def start(index: int) -> multiprocessing.process.BaseProcess:
        # A replacement keeps the index, so the GPU, of the worker it replaces.
        process = context.Process(target=_worker_process, args=(settings, str(model_dir), in_flight, index))
        process.start()
        return process

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received signal %d: stopping %d workers", signum, len(workers))
        stop.set()

    workers: list[multiprocessing.process.BaseProcess] = []
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers.extend(start(index) for index in range(settings.workers))
    failed = False
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(workers):
                if process.is_alive() or stop.is_set():
                    continue
                if process.exitcode == EXIT_LOAD_FAILED:
                    logger.error("worker %s could not start or load the model; stopping", process.pid)
                    failed = True
                    stop.set()
                    break
                logger.warning("worker %s exited with %s; starting another", process.pid, process.exitcode)
                _forget_worker(process.pid)
                workers[index] = start(index)
    finally:
        for process in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in workers:
            process.join(settings.graceful_timeout_s + 10)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    clean = all(process.exitcode == EXIT_OK for process in workers)
    return EXIT_OK if clean and not failed else EXIT_FAILED


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only then,
    # and without it Nagle + delayed ACKs add ~40 ms to every small response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
        force=True,
    )


if __name__ == "__main__":
    sys.exit(main())
