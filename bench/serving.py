"""Serving benchmark (not a test): our batching model server against TorchServe and plain FastAPI.

    .venv/bin/python -m bench.serving [--quick] [--markdown PATH] [--json PATH]

One model (MLP 512-2048-2048-10, TorchScript ``model.pth``), one body format (JSON,
``{"instances": [[512 floats]]}``, one row per request; answer ``{"predictions": [[10 floats]]}``)
and one machine, side by side:

- ``ours``: ``python -m handlers.serving.server`` (dynamic batching) on the DLC-layout model folder,
  2 workers x 1 torch thread (one worker per core, as tuned TorchServe runs);
- ``torchserve-sagemaker-defaults``: TorchServe through the SageMaker PyTorch inference toolkit
  with every default (what the SageMaker PyTorch DLC runs out of the box);
- ``torchserve-tuned``: TorchServe with its own batched handler, 2 workers x 1 thread, batch 32,
  5 ms delay, errors-only logging;
- ``fastapi`` / ``fastapi-2-threads``: FastAPI + uvicorn, one forward pass per request (sync route,
  threadpool), 1 or 2 torch threads per forward pass;
- the in-process batched forward pass (batch 1, 8, 32, 128) on all the cores as the limit.

Closed-loop callers at each concurrency (1, 16, 64) for a fixed window after a warm-up, through
an asyncio keep-alive HTTP/1.1 client whose own ceiling (against a trivial endpoint) is reported.
TorchServe and the toolkit live in their own virtual environment (``build/venv-torchserve``, from
``bench/requirements-torchserve.txt``), created on first use. Traffic goes to 127.0.0.1 only; every
server started is stopped on the way out (errors and Ctrl-C included). ``--quick`` is a smoke run:
short windows, concurrency 1 and 16, no TorchServe. ``--device``, ``--precision`` and
``--workers-per-gpu`` go to our server as they are (docs/serving.md); the in-process limit stays on
the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._serving_loadgen import LoadResult, build_request, run_load
from emulator.ports import free_port

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
TS_REQUIREMENTS = BENCH / "requirements-torchserve.txt"
TS_VENV = REPO / "build" / "venv-torchserve"  # build/ is gitignored; never the project's .venv
HOST = "127.0.0.1"
IN_FEATURES, HIDDEN, OUT_FEATURES = 512, 2048, 10
DISTINCT_BODIES = 64
CORES = 2  # the core budget every server gets (this machine has 2, shared with other work)

OURS = "ours"
TS_DEFAULTS = "torchserve-sagemaker-defaults"
TS_TUNED = "torchserve-tuned"
FASTAPI = "fastapi"
FASTAPI_2T = "fastapi-2-threads"
TRIVIAL = "trivial-endpoint"


# --------------------------------------------------------------------------------------- fixtures


def prepare_model(workdir: Path, seed: int = 0) -> Path:
    """Write the DLC-layout model folder: ``model/model.pth`` (TorchScript) + ``model/code/inference.py``."""
    import torch  # noqa: PLC0415 - only the driver's set-up and the in-process limit need torch

    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(IN_FEATURES, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, OUT_FEATURES),
    ).eval()
    model_dir = workdir / "model"
    (model_dir / "code").mkdir(parents=True)
    torch.jit.script(mlp).save(str(model_dir / "model.pth"))
    shutil.copy(BENCH / "_serving_inference.py", model_dir / "code" / "inference.py")
    return model_dir


def prepare_torchserve_store(workdir: Path, model_dir: Path) -> Path:
    """An unarchived TorchServe model (``store/mlp``) with the batched handler; no archiver needed."""
    folder = workdir / "ts-store" / "mlp"
    (folder / "MAR-INF").mkdir(parents=True)
    shutil.copy(model_dir / "model.pth", folder / "model.pth")
    shutil.copy(BENCH / "_serving_ts_handler.py", folder / "handler.py")
    manifest = {
        "runtime": "python",
        "model": {
            "modelName": "mlp",
            "serializedFile": "model.pth",
            "handler": "handler.py",
            "modelVersion": "1.0",
        },
        "archiverVersion": "0.12.0",
    }
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))
    return folder.parent


def request_bodies(count: int = DISTINCT_BODIES, seed: int = 1) -> list[bytes]:
    """``count`` distinct one-row bodies of 512 floats (4 decimals: ~4 KB each)."""
    rng = random.Random(seed)
    rows = ([round(rng.gauss(0.0, 1.0), 4) for _ in range(IN_FEATURES)] for _ in range(count))
    return [json.dumps({"instances": [row]}).encode() for row in rows]


def busy_cores(seconds: float = 2.0) -> float:
    """CPU cores busy machine-wide over ``seconds`` (/proc/stat); between servers, that is others' work."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    elapsed = max(1, total1 - total0)
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / elapsed)


def wait_for_quiet(max_wait_s: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait_s``) until other work uses < ``threshold`` cores; returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    busy = busy_cores()
    while busy >= threshold and time.monotonic() < deadline:
        print(f"  machine busy with other work ({busy:.2f} cores); waiting ...", flush=True)
        busy = busy_cores(5.0)
    return busy


def ensure_torchserve_venv() -> Path:
    """``build/venv-torchserve`` with TorchServe + the SageMaker toolkit; created/updated on first use."""
    digest = hashlib.sha256(TS_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    stamp = TS_VENV / f".installed-{digest}"
    if stamp.exists():
        return TS_VENV
    if shutil.which("java") is None:
        raise SystemExit("TorchServe needs Java 17 on PATH; run with --skip-torchserve without it")
    print(
        f"Creating {TS_VENV.relative_to(REPO)} for TorchServe from {TS_REQUIREMENTS.relative_to(REPO)} "
        "(first use only: about a minute; it stays out of the project's .venv) ...",
        flush=True,
    )
    if not (TS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(TS_VENV)], check=True)
    subprocess.run(
        [str(TS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(TS_REQUIREMENTS)],
        check=True,
    )
    for old in TS_VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return TS_VENV


# ---------------------------------------------------------------------------------------- servers


@dataclass
class ServerSpec:
    """How to start one server and talk to it."""

    name: str
    command: list[str]
    invoke_path: str
    settings: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO
    ping_path: str = "/ping"
    metrics_path: str | None = None
    workers: int = 1  # processes answering /metrics each for itself
    ready_timeout_s: float = 120.0


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        # Accept on every request: our server's GET /metrics answers its per-worker JSON then.
        headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if body else {})}
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


class Server:
    """A server process in its own process group; stopping it stops every process it started."""

    def __init__(self, spec: ServerSpec, port: int, log_path: Path) -> None:
        self.spec = spec
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, sample_body: bytes) -> None:
        with self.log_path.open("ab") as log:  # appended: a log per server across rounds
            self.process = subprocess.Popen(  # noqa: S603 - our own command lines
                self.spec.command,
                cwd=self.spec.cwd,
                env={**os.environ, **self.spec.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches its children
            )
        self._wait_ready(sample_body)

    def _wait_ready(self, sample_body: bytes) -> None:
        deadline = time.monotonic() + self.spec.ready_timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if http_request(self.port, "GET", self.spec.ping_path, timeout=2.0)[0] == 200:
                    invoke = self.spec.invoke_path
                    status, body = http_request(self.port, "POST", invoke, sample_body, timeout=30.0)
                    if status == 200:
                        check_answer(body)
                        return
                    last = f"HTTP {status}: {body[:300]!r}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise RuntimeError(
            f"{self.spec.name} not ready after {self.spec.ready_timeout_s:.0f} s ({last}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def processes(self) -> list[dict[str, Any]]:
        """The processes of this server's group (pid, threads, OMP_NUM_THREADS, command)."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) != self.process.pid:  # field 5 of stat: the process group
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            omp = next(
                (v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"OMP_NUM_THREADS=")), None
            )
            found.append(
                {"pid": int(entry.name), "threads": int(fields[17]), "omp": omp, "cmd": cmdline[:160]}
            )
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                self.process.poll()
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue
            break
        self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def running(spec: ServerSpec, port: int, logs: Path, sample_body: bytes) -> Iterator[Server]:
    server = Server(spec, port, logs / f"{spec.name}.log")
    try:
        server.start(sample_body)
        yield server
    finally:
        server.stop()


def check_answer(body: bytes) -> None:
    """The answer to one row must be ``{"predictions": [[10 numbers]]}``."""
    payload = json.loads(body)
    predictions = payload["predictions"] if isinstance(payload, dict) else payload
    if len(predictions) != 1 or len(predictions[0]) != OUT_FEATURES:
        raise RuntimeError(f"unexpected answer shape: {body[:200]!r}")


def gpu_count() -> int:
    """The GPUs torch sees here (what the server's ``--device auto`` would use)."""
    import torch  # noqa: PLC0415

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def our_worker_options(args: argparse.Namespace, gpus: int) -> tuple[list[str], int]:
    """Our server's device, precision and worker options, and how many workers answer ``/metrics``.

    ``--workers`` wins; on CUDA without it the server runs ``--workers-per-gpu`` (1) per GPU; on the
    CPU it runs one worker per core of the budget.
    """
    options = ["--device", args.device, "--precision", args.precision]
    if args.workers is not None:
        return [*options, "--workers", str(args.workers)], args.workers
    if args.device == "cpu" or gpus == 0:
        return [*options, "--workers", str(CORES)], CORES
    per_gpu = args.workers_per_gpu or 1
    return [*options, "--workers-per-gpu", str(per_gpu)], gpus * per_gpu


def server_specs(
    workdir: Path, model_dir: Path, ports: dict[str, int], args: argparse.Namespace
) -> dict[str, ServerSpec]:
    python = sys.executable
    ts_python = str(TS_VENV / "bin" / "python")
    logs = workdir / "logs"
    worker_options, workers = our_worker_options(args, gpu_count())
    specs = {
        TRIVIAL: ServerSpec(
            TRIVIAL,
            [python, "-m", "bench._serving_loadgen", "--trivial-server", "--port", str(ports[TRIVIAL])],
            "/invocations",
            {"what": "fixed answer, no model: the load generator's ceiling"},
        ),
        OURS: ServerSpec(
            OURS,
            [
                python,
                "-m",
                "handlers.serving.server",
                "--model-dir",
                str(model_dir),
                "--port",
                str(ports[OURS]),
            ]
            + ["--log-level", "warning"]
            + [*worker_options, "--max-batch-size", str(args.max_batch_size)]
            + [
                "--max-batch-delay-ms",
                str(args.max_batch_delay_ms),
                "--torch-threads",
                str(args.torch_threads),
            ],
            "/invocations",
            {
                "workers": workers,
                "torch_threads": args.torch_threads,
                "max_batch_size": args.max_batch_size,
                "max_batch_delay_ms": args.max_batch_delay_ms,
                "device": args.device,
                "precision": args.precision,
                "workers_per_gpu": args.workers_per_gpu,
            },
            metrics_path="/metrics",
            workers=workers,
        ),
    }
    for name, threads in ((FASTAPI, 1), (FASTAPI_2T, 2)):
        specs[name] = ServerSpec(
            name,
            [
                python,
                "-m",
                "bench._serving_fastapi",
                "--model-dir",
                str(model_dir),
                "--port",
                str(ports[name]),
            ]
            + ["--torch-threads", str(threads)],
            "/invocations",
            {
                "processes": 1,
                "torch_threads": threads,
                "batching": "none (one forward per request, sync route in the threadpool)",
            },
            # threadpool threads do not inherit torch.set_num_threads; OpenMP's variable reaches them
            env={"OMP_NUM_THREADS": str(threads)},
        )
    if not args.skip_torchserve:
        ts_path = f"{TS_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        defaults_dir = workdir / "sagemaker"
        (defaults_dir / "tmp").mkdir(parents=True)
        shutil.copytree(model_dir, defaults_dir / "model")
        specs[TS_DEFAULTS] = ServerSpec(
            TS_DEFAULTS,
            [ts_python, str(BENCH / "_serving_sagemaker.py"), "--config", str(defaults_dir / "ts.properties")]
            + ["--metrics-port", str(ports["ts-defaults-metrics"])]
            + ["--grpc-ports", str(ports["ts-defaults-grpc1"]), str(ports["ts-defaults-grpc2"])]
            + ["--tmp-dir", str(defaults_dir / "tmp")],
            "/invocations",
            {
                "workers": "toolkit default (TorchServe: one per core = 2)",
                "torch_threads": "torch's default per worker (no OMP_NUM_THREADS set; 2 on this machine)",
                "batch_size": 1,
                "handler": "toolkit handler_service (input_fn/predict_fn/output_fn per request)",
                "logging": "toolkit default log4j2 (INFO)",
            },
            env={
                "SAGEMAKER_BASE_DIR": str(defaults_dir),
                "SAGEMAKER_BIND_TO_PORT": str(ports[TS_DEFAULTS]),
                "LOG_LOCATION": str(logs / "ts-defaults"),
                "METRICS_LOCATION": str(logs / "ts-defaults"),
                "TMPDIR": str(defaults_dir / "tmp"),
                "PATH": ts_path,
            },
            cwd=defaults_dir,
            ready_timeout_s=180.0,
        )
        tuned_dir = workdir / "ts-tuned"
        (tuned_dir / "tmp").mkdir(parents=True)
        store = prepare_torchserve_store(workdir, model_dir)
        models = {
            "mlp": {
                "1.0": {
                    "defaultVersion": True,
                    "marName": "mlp",
                    "minWorkers": args.ts_workers,
                    "maxWorkers": args.ts_workers,
                    "batchSize": args.max_batch_size,
                    "maxBatchDelay": args.max_batch_delay_ms,
                    "responseTimeout": 60,
                }
            }
        }
        (tuned_dir / "config.properties").write_text(
            f"inference_address=http://{HOST}:{ports[TS_TUNED]}\n"
            f"management_address=http://{HOST}:{ports['ts-tuned-management']}\n"
            f"metrics_address=http://{HOST}:{ports['ts-tuned-metrics']}\n"
            f"grpc_inference_address={HOST}\ngrpc_management_address={HOST}\n"
            f"grpc_inference_port={ports['ts-tuned-grpc1']}\ngrpc_management_port={ports['ts-tuned-grpc2']}\n"
            f"vmargs=-Djava.io.tmpdir={tuned_dir / 'tmp'}\n"
            "disable_token_authorization=true\ndisable_system_metrics=true\n"
            f"default_workers_per_model={args.ts_workers}\nload_models=mlp\n"
            f"models={json.dumps(models)}\n"
        )
        (tuned_dir / "log4j2.xml").write_text(ERRORS_ONLY_LOG4J)
        specs[TS_TUNED] = ServerSpec(
            TS_TUNED,
            [str(TS_VENV / "bin" / "torchserve"), "--start", "--foreground", "--ncs"]
            + ["--model-store", str(store), "--ts-config", str(tuned_dir / "config.properties")]
            + ["--log-config", str(tuned_dir / "log4j2.xml"), "--disable-token-auth"],
            "/predictions/mlp",
            {
                "workers": args.ts_workers,
                "torch_threads": args.ts_torch_threads,
                "batch_size": args.max_batch_size,
                "max_batch_delay_ms": args.max_batch_delay_ms,
                "handler": "bench/_serving_ts_handler.py (one forward per batch)",
                "logging": "errors only, system metrics off",
            },
            env={
                "BENCH_TORCH_THREADS": str(args.ts_torch_threads),
                "OMP_NUM_THREADS": str(args.ts_torch_threads),
                "LOG_LOCATION": str(logs / "ts-tuned"),
                "METRICS_LOCATION": str(logs / "ts-tuned"),
                "TMPDIR": str(tuned_dir / "tmp"),
                "PATH": ts_path,
            },
            cwd=tuned_dir,
            ping_path="/ping",
            ready_timeout_s=180.0,
        )
    return specs


ERRORS_ONLY_LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
    <Appenders>
        <Console name="STDOUT" target="SYSTEM_OUT">
            <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
        </Console>
    </Appenders>
    <Loggers>
        <Logger name="ACCESS_LOG" level="off" additivity="false"/>
        <Logger name="MODEL_LOG" level="error" additivity="false"><AppenderRef ref="STDOUT"/></Logger>
        <Logger name="MODEL_METRICS" level="off" additivity="false"/>
        <Logger name="TS_METRICS" level="off" additivity="false"/>
        <Logger name="org.pytorch.serve" level="error" additivity="false"><AppenderRef ref="STDOUT"/></Logger>
        <Root level="error"><AppenderRef ref="STDOUT"/></Root>
    </Loggers>
</Configuration>
"""


# ------------------------------------------------------------------------------------ measurement


def measure_limit(
    model_path: Path, threads: int, batches: tuple[int, ...], seconds: float
) -> dict[int, float]:
    """Rows/s of the bare TorchScript forward pass in this process, per batch size."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    model = torch.jit.load(str(model_path), map_location="cpu").eval()
    rows_per_s: dict[int, float] = {}
    with torch.inference_mode():
        for batch in batches:
            x = torch.randn(batch, IN_FEATURES)
            until = time.perf_counter() + min(0.5, seconds / 4)
            while time.perf_counter() < until:
                model(x)
            calls = 0
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                model(x)
                calls += 1
            rows_per_s[batch] = calls * batch / elapsed
    return rows_per_s


def measure_limit_when_quiet(
    model_dir: Path, batches: tuple[int, ...], args: argparse.Namespace
) -> tuple[dict[int, float], float]:
    other = wait_for_quiet(args.wait_quiet)
    print(f"in-process forward pass, {args.limit_threads} torch threads (other work: {other:.2f} cores):")
    limit = measure_limit(model_dir / "model.pth", args.limit_threads, batches, args.limit_seconds)
    print("  " + "  ".join(f"batch {b}: {limit[b]:,.0f} rows/s" for b in batches), flush=True)
    return limit, other


def measure_server(
    server: Server, bodies: list[bytes], concurrencies: tuple[int, ...], warmup_s: float, duration_s: float
) -> list[dict[str, Any]]:
    """One closed-loop run per concurrency, with who used the CPU meanwhile (server, client, others)."""
    requests = [build_request(server.spec.invoke_path, server.port, body) for body in bodies]
    hertz = os.sysconf("SC_CLK_TCK")
    results = []
    for concurrency in concurrencies:
        before = _server_metrics(server, server.spec.workers)
        started, busy0, own0 = _cpu_jiffies(server)
        result = run_load(
            server.port, requests, concurrency=concurrency, warmup_s=warmup_s, duration_s=duration_s
        )
        ended, busy1, own1 = _cpu_jiffies(server)
        row = asdict(result)
        elapsed = max(1e-6, ended - started)
        row["server_cpu_cores"] = (own1 - own0) / hertz / elapsed
        row["other_work_cores"] = max(
            0.0, (busy1 - busy0) / hertz / elapsed - row["server_cpu_cores"] - result.client_cpu_cores
        )
        if before is not None and (after := _server_metrics(server, server.spec.workers)) is not None:
            batches = after.get("batches", 0) - before.get("batches", 0)
            batched = after.get("batched_requests", 0) - before.get("batched_requests", 0)
            row["mean_batch_requests"] = batched / batches if batches else None
        print(f"  {server.spec.name:30s} c={concurrency:<3d} {_line(result)}", flush=True)
        results.append(row)
    return results


def measure_servers(
    specs: dict[str, ServerSpec],
    ports: dict[str, int],
    bodies: list[bytes],
    *,
    settings: dict[str, Any],
    logs: Path,
    args: argparse.Namespace,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Each server in turn: start, load at each concurrency, stop; a failing server is reported, not fatal.

    With ``--rounds N`` the whole sequence repeats and each (server, concurrency) keeps its round
    with the highest rps: other work on a shared machine only ever slows a run down.
    """
    results: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, str] = {}
    for round_index in range(args.rounds):
        for name in args.servers:
            if name in failures:
                continue
            spec = specs[name]
            other = wait_for_quiet(args.wait_quiet)
            print(f"{name}: starting, round {round_index + 1} (other work: {other:.2f} cores)", flush=True)
            try:
                with running(spec, ports[name], logs, bodies[0]) as server:
                    processes = server.processes()
                    omp = sorted({str(p["omp"]) for p in processes if "python" in p["cmd"]})
                    settings[name] = {
                        **spec.settings,
                        "processes_in_group": len(processes),
                        "OMP_NUM_THREADS_seen": ",".join(omp),
                    }
                    runs = measure_server(server, bodies, tuple(args.concurrency), args.warmup, args.duration)
            except RuntimeError as exc:
                failures[name] = str(exc).splitlines()[0]
                print(f"{name}: NOT MEASURED: {exc}", file=sys.stderr, flush=True)
                continue
            for run in runs:
                run["round"] = round_index + 1
            best = {r["concurrency"]: r for r in results.get(name, [])}
            for run in runs:
                if run["concurrency"] not in best or run["rps"] > best[run["concurrency"]]["rps"]:
                    best[run["concurrency"]] = run
            results[name] = [best[c] for c in sorted(best)]
    return results, failures


def _server_metrics(server: Server, workers: int) -> dict[str, Any] | None:
    """The server's batch counters (our server's ``GET /metrics``) summed over its ``workers``.

    Each worker answers for itself, and the kernel hands each new connection to one worker
    (SO_REUSEPORT), so this asks on fresh connections until every worker has answered once.
    """
    if server.spec.metrics_path is None:
        return None
    per_worker: dict[Any, dict[str, Any]] = {}
    for _ in range(20 * workers):
        with contextlib.suppress(OSError, ValueError):
            status, body = http_request(server.port, "GET", server.spec.metrics_path)
            if status == 200:
                document = dict(json.loads(body))
                per_worker[document.get("worker_pid")] = document
        if len(per_worker) >= workers:
            break
    if len(per_worker) < workers:
        return None
    counters = ("batches", "batched_requests")
    return {name: sum(int(doc.get(name, 0)) for doc in per_worker.values()) for name in counters}


def _cpu_jiffies(server: Server) -> tuple[float, int, int]:
    """(monotonic time, machine-wide busy jiffies, jiffies used by the server's processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(values) - values[3] - values[4]
    own = 0
    for process in server.processes():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{process['pid']}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            own += int(fields[11]) + int(fields[12])  # utime + stime
    return time.monotonic(), busy, own


def _line(result: LoadResult) -> str:
    text = (
        f"{result.rps:8.0f} rps  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
        f"errors {result.errors}  client {result.client_cpu_cores:.2f} cores"
    )
    if result.error_samples:
        text += f"  e.g. {result.error_samples[0][:120]}"
    return text


# --------------------------------------------------------------------------------------- verdicts


def _at(results: dict[str, list[dict[str, Any]]], name: str, concurrency: int) -> dict[str, Any] | None:
    return next((r for r in results.get(name, []) if r["concurrency"] == concurrency), None)


def evaluate_targets(
    results: dict[str, list[dict[str, Any]]], limit: dict[int, float]
) -> list[dict[str, Any]]:
    """The issue's targets, each PASS, MISS or n/a (a side not measured), with the numbers behind it."""
    ours64, ours1 = _at(results, OURS, 64), _at(results, OURS, 1)
    fastapi_c1 = [(name, r) for name in (FASTAPI, FASTAPI_2T) if (r := _at(results, name, 1)) is not None]
    torchserve64 = [(name, _at(results, name, 64)) for name in (TS_DEFAULTS, TS_TUNED)]
    measured = [(name, r) for name, r in torchserve64 if r is not None]
    verdicts = []

    def verdict(target: str, ok: bool | None, detail: str) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        verdicts.append({"target": target, "status": status, "detail": detail})

    if ours64 is not None and measured:
        best_name, best = max(measured, key=lambda item: item[1]["rps"])
        ratio = ours64["rps"] / best["rps"]
        verdict(
            "c=64: ours rps >= 1.5x the best TorchServe config, with a lower p99",
            ratio >= 1.5 and ours64["p99_ms"] < best["p99_ms"],
            f"{ours64['rps']:.0f} vs {best['rps']:.0f} rps ({best_name}) = {ratio:.2f}x; "
            f"p99 {ours64['p99_ms']:.1f} vs {best['p99_ms']:.1f} ms",
        )
    else:
        verdict("c=64: ours rps >= 1.5x the best TorchServe config, with a lower p99", None, "not measured")
    if ours64 is not None and 32 in limit:
        share = ours64["rps"] / limit[32]
        verdict(
            "c=64: ours rps >= 45% of the in-process batch-32 limit",
            share >= 0.45,
            f"{ours64['rps']:.0f} / {limit[32]:.0f} rows/s = {share:.0%}",
        )
    else:
        verdict("c=64: ours rps >= 45% of the in-process batch-32 limit", None, "not measured")
    if ours1 is not None and fastapi_c1:
        fastest_name, fastest = min(fastapi_c1, key=lambda item: item[1]["p50_ms"])
        ratio = ours1["p50_ms"] / fastest["p50_ms"]
        verdict(
            "c=1: ours p50 <= 1.1x plain FastAPI's",
            ratio <= 1.1,
            f"{ours1['p50_ms']:.2f} vs {fastest['p50_ms']:.2f} ms ({fastest_name}) = {ratio:.2f}x",
        )
    else:
        verdict("c=1: ours p50 <= 1.1x plain FastAPI's", None, "not measured")
    return verdicts


# ---------------------------------------------------------------------------------------- reports


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Serving benchmark, {report['date']}: {report['machine']}; torch {report['torch']}, "
        f"Python {report['python']}; window {report['duration_s']:g} s after {report['warmup_s']:g} s "
        "warm-up per concurrency; closed-loop callers.",
        "",
        "| server | concurrency | rps | p50 ms | p99 ms | errors | server CPU | client CPU | other work |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in report["results"].items():
        for r in rows:
            lines.append(
                f"| {name} | {r['concurrency']} | {_fmt(r['rps'], 0)} | {_fmt(r['p50_ms'], 2)} | "
                f"{_fmt(r['p99_ms'], 2)} | {r['errors']} | {_fmt(r.get('server_cpu_cores'), 2)} | "
                f"{_fmt(r['client_cpu_cores'], 2)} | {_fmt(r.get('other_work_cores'), 2)} |"
            )
    lines += [
        "",
        "CPU columns are cores (of 2) over warm-up + window: the server's processes, the load generator, and "
        "everything else on the machine (busy minus those two).",
    ]
    for name, rows in report["results"].items():
        batches = [
            f"c={r['concurrency']}: {r['mean_batch_requests']:.1f}"
            for r in rows
            if r.get("mean_batch_requests")
        ]
        if batches:
            lines.append(f"`{name}` requests per forward pass (its /metrics): {', '.join(batches)}.")
    lines += ["", "In-process forward pass (the limit), rows/s:", "", "| batch | rows/s |", "|---:|---:|"]
    lines += [f"| {batch} | {_fmt(rate, 0)} |" for batch, rate in report["limit_rows_per_s"].items()]
    lines += ["", "Settings (same 2-core budget for every server):", ""]
    lines += [f"- `{name}`: {json.dumps(settings)}" for name, settings in report["settings"].items()]
    if report.get("failures"):
        lines += ["", "Not measured:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in report["failures"].items()]
    lines += ["", "Targets:", ""]
    lines += [f"- **{v['status']}** {v['target']}: {v['detail']}" for v in report["targets"]]
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()}-core {cpu} ({platform.system()} {platform.release()}), no GPU used"


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short windows, c=1 and 16, no TorchServe"
    )
    parser.add_argument("--duration", type=float, default=12.0, help="measured seconds per concurrency")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each window")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=[TRIVIAL, FASTAPI, FASTAPI_2T, OURS, TS_DEFAULTS, TS_TUNED],
        choices=[TRIVIAL, FASTAPI, FASTAPI_2T, OURS, TS_DEFAULTS, TS_TUNED],
    )
    parser.add_argument("--skip-torchserve", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=1, help="ours: torch threads per worker")
    parser.add_argument(
        "--workers", type=int, help=f"our server's worker processes ({CORES} on the CPU, per GPU on CUDA)"
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="ours: where the model runs"
    )
    parser.add_argument(
        "--precision", choices=["float32", "float16", "bfloat16"], default="float32", help="ours: autocast"
    )
    parser.add_argument(
        "--workers-per-gpu", type=int, help="ours on CUDA: workers (model copies) per GPU (1)"
    )
    parser.add_argument(
        "--limit-threads", type=int, default=CORES, help="torch threads of the in-process limit (all cores)"
    )
    parser.add_argument("--max-batch-size", type=int, default=32, help="ours and tuned TorchServe")
    parser.add_argument("--max-batch-delay-ms", type=int, default=5, help="ours and tuned TorchServe")
    parser.add_argument("--ts-workers", type=int, default=2, help="tuned TorchServe workers")
    parser.add_argument(
        "--ts-torch-threads", type=int, default=1, help="torch threads per tuned TorchServe worker"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat everything; keep each best round")
    parser.add_argument("--limit-seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument(
        "--wait-quiet", type=float, default=120.0, help="max seconds to wait for other work to calm down"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep the model folder and server logs")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.limit_seconds = 3.0, 1.0, 1.0
        args.concurrency = [c for c in args.concurrency if c <= 16] or [1, 16]
        args.skip_torchserve = True
        args.wait_quiet = min(args.wait_quiet, 15.0)
    if args.skip_torchserve:
        args.servers = [s for s in args.servers if s not in (TS_DEFAULTS, TS_TUNED)]
    if min(args.concurrency) < 1 or max(args.concurrency) > 256 or args.duration > 120 or args.warmup > 60:
        parser.error("concurrency must be 1..256, --duration <= 120 s, --warmup <= 60 s")
    return args


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through every `running(...)`, which stops its server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if not args.skip_torchserve:
        ensure_torchserve_venv()
    import torch  # noqa: PLC0415

    workdir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    (workdir / "logs").mkdir()
    try:
        model_dir = prepare_model(workdir)
        bodies = request_bodies()
        names = [TRIVIAL, FASTAPI, FASTAPI_2T, OURS, TS_DEFAULTS, TS_TUNED]
        extra = ["ts-defaults-metrics", "ts-defaults-grpc1", "ts-defaults-grpc2"]
        extra += ["ts-tuned-management", "ts-tuned-metrics", "ts-tuned-grpc1", "ts-tuned-grpc2"]
        ports = {name: free_port() for name in names + extra}
        specs = server_specs(workdir, model_dir, ports, args)
        batches = (1, 8, 32, 128)
        limit, other = measure_limit_when_quiet(model_dir, batches, args)
        settings: dict[str, Any] = {
            "in-process limit": {
                "torch_threads": args.limit_threads,
                "other_work_cores_before": round(other, 2),
            }
        }
        results, failures = measure_servers(
            specs, ports, bodies, settings=settings, logs=workdir / "logs", args=args
        )
        # measured again at the end; the better of the two counts (others' work only slows it down)
        again, _ = measure_limit_when_quiet(model_dir, batches, args)
        limit = {batch: max(limit[batch], again[batch]) for batch in batches}

        report = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_description(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "body_bytes": len(bodies[0]),
            "results": results,
            "limit_rows_per_s": limit,
            "settings": settings,
            "failures": failures,
            "targets": evaluate_targets(results, limit),
        }
        markdown = render_markdown(report)
        print()
        print(markdown)
        if args.markdown:
            args.markdown.write_text(markdown)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 1 if failures else 0
    finally:
        if args.keep_workdir:
            print(f"model folder and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
