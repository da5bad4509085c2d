"""GPU check: the platform's training and serving paths on CUDA and on the CPU, side by side, in one run.

    python -m bench.gpu_check --out DIR [--device auto|cuda|cpu] [--quick] [--budget-s SECONDS]

Writes ``DIR/gpu_check.json`` (everything measured; rewritten after every step, so a run cut short
leaves its partial results), ``DIR/gpu_check.txt`` (a short summary) and ``DIR/logs/`` (the
training jobs' and model servers' output).

1. Environment: which packages import (checked before anything needs them), torch and CUDA facts
   (device, CUDA version, bf16 support), ``nvidia-smi`` when present.
2. Training through the platform's code: per task of ``training_jobs.tasks.TASKS`` (data from
   ``datasets.write_raw`` + ``prepare.prepare``), the Trainer as the training job builds it
   (``train.make_trainer`` through ``bench.train_throughput.setup``), with the hyperparameter ``amp``
   off and on, on the device ``distributed.select_device`` picks and on the CPU: samples/s (the
   first epoch is a warm-up, timed apart), the final validation metric, whether every loss stayed
   finite, and the devices and dtypes the parameters and outputs really had.
3. The training job's own entry point (``python -m training_jobs.train`` in the SageMaker layout)
   writes a servable model folder per task; its checkpoint shows the device it trained on.
4. Serving: the real model server (``python -m handlers.serving.server``) on that folder, once with
   the GPU visible and once with ``CUDA_VISIBLE_DEVICES=""``; closed-loop load on 127.0.0.1 with
   one-instance and many-instance JSON requests (``{"instances": [...]}``): p50/p99 latency,
   requests/s, rows/s, and the device the server logged it loaded the model on.

``--device cuda`` (the default where CUDA is available) runs both halves; ``--device cpu`` the CPU
half only. ``--quick`` is a smoke run (about a minute on a 2-core CPU machine). The wall-clock
budget is checked before every step and between epochs; what does not fit is skipped and named.
Exit status: 0 when everything requested ran, 1 when anything failed or was skipped (or CUDA was
requested and is absent), 2 when torch, numpy or scikit-learn cannot be imported (the report then
holds the environment alone).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from bench._serving_loadgen import build_request, run_load
from bench.serving import Server, ServerSpec, http_request
from emulator.ports import free_port
from training_jobs.metrics import METRIC_PREFIX
from training_jobs.tasks import TASKS, TaskSpec, get_task, read_records

REPO = Path(__file__).resolve().parent.parent
REPORT_FILE = "gpu_check.json"
SUMMARY_FILE = "gpu_check.txt"
FORMAT = "ml-platform/gpu-check/v1"
HOST = "127.0.0.1"
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}
# distribution name -> import name (NEEDED_* below: which of them each part needs)
PROBES = {
    "torch": "torch",
    "numpy": "numpy",
    "scikit-learn": "sklearn",
    "scipy": "scipy",
    "uvicorn": "uvicorn",
    "h11": "h11",
    "httptools": "httptools",
    "uvloop": "uvloop",
    "orjson": "orjson",
}
NEEDED_TO_TRAIN = ("torch", "numpy")
NEEDED_TO_GENERATE = ("scikit-learn",)  # datasets.write_raw (not needed with --raw-dir)
NEEDED_TO_SERVE = ("uvicorn",)
FINAL_RESERVE_S = 3.0  # kept for writing the report at the end
SERVER_START_S = 20.0  # what one server start is budgeted (CUDA initialisation included)
JOB_S = 25.0  # what one training-job run is budgeted
EXIT_OK, EXIT_INCOMPLETE, EXIT_MISSING = 0, 1, 2


@dataclass(frozen=True)
class Plan:
    """How big each measurement is."""

    name: str
    budget_s: float
    train_epochs: Mapping[str, int] | None  # None: each task's default epochs
    training_share: float  # of the budget, for the in-process training runs
    job_epochs: int
    warmup_s: float
    window_s: float
    loads: tuple[tuple[int, int], ...]  # (instances per request, concurrent callers)

    def epochs(self, task: TaskSpec) -> int:
        if self.train_epochs is None:
            return max(2, int(task.defaults.get("epochs", 10)))
        return max(2, self.train_epochs.get(task.name, 2))

    def serve_cost_s(self) -> float:
        return SERVER_START_S + len(self.loads) * (self.warmup_s + self.window_s + 1.0)


QUICK = Plan(
    "quick", 110.0, {"digits": 3, "diabetes": 4, "spam": 2}, 0.35, 1, 0.3, 1.5, ((1, 1), (1, 8), (16, 1))
)
FULL = Plan("full", 330.0, None, 0.4, 3, 0.5, 3.0, ((1, 1), (1, 16), (32, 1), (32, 8)))


class Clock:
    """The run's wall-clock budget (``time.monotonic``)."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.deadline = self.started + budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - time.monotonic()


# ------------------------------------------------------------------------------------------- report


def new_report(args: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "started_at": _now(),
        "finished_at": None,
        "wall_s": None,
        "complete": False,
        "args": dict(args),
        "plan": asdict(plan),
        "environment": {},
        "halves": {},
        "training": {"runs": []},
        "training_job": {"runs": []},
        "serving": {"runs": []},
        "skipped": [],
        "errors": [],
    }


def write_report(out: Path, report: Mapping[str, Any]) -> None:
    """Write the JSON report and the text summary into ``out`` (each replaced atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / REPORT_FILE, json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    _write_atomic(out / SUMMARY_FILE, summarize(report))


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    temp.replace(path)


def summarize(report: Mapping[str, Any]) -> str:
    """The report as a few aligned tables; robust to a partial report (missing sections)."""
    env = report.get("environment", {})
    tenv = env.get("torch", {}) or {}
    status = "complete" if report.get("complete") else "INCOMPLETE"
    wall = report.get("wall_s")
    args = report.get("args", {})
    lines = [
        f"gpu_check: {report.get('plan', {}).get('name', '?')} run, --device {args.get('device', '?')}, "
        f"{status}" + (f" in {wall:.0f} s" if isinstance(wall, int | float) else ""),
        f"python {env.get('python', '?')} | torch {tenv.get('torch', 'not importable')} "
        f"(CUDA build {tenv.get('torch_cuda_build') or 'none'}) | CUDA available: "
        f"{'yes' if tenv.get('cuda_available') else 'no'}",
    ]
    if tenv.get("cuda_available"):
        lines.append(
            f"GPU: {tenv.get('device_name')} (capability {tenv.get('capability')}, "
            f"{tenv.get('total_memory_gib')} GiB, bf16 {'yes' if tenv.get('bf16_supported') else 'no'}, "
            f"cuDNN {tenv.get('cudnn')}, {tenv.get('device_count')} device(s))"
        )
    imports = env.get("imports", {})
    if imports:
        lines.append(
            "imports: "
            + ", ".join(
                f"{name} {entry['version']}" if entry.get("importable") else f"{name} MISSING"
                for name, entry in imports.items()
            )
        )
    amp = tenv.get("amp")
    if amp:
        lines += [f"AMP: {amp['flag']}", f"     {amp['rule']}; {amp['cpu']}"]
    for half, what in report.get("halves", {}).items():
        lines.append(f"{half} half: {what}")
    lines += _training_table(report.get("training", {}).get("runs", []))
    lines += _job_table(report.get("training_job", {}).get("runs", []))
    lines += _serving_table(report.get("serving", {}).get("runs", []))
    findings = report.get("findings", [])
    if findings:
        lines += ["", "findings:", *(f"- {f}" for f in findings)]
    skipped = report.get("skipped", [])
    if skipped:
        lines += ["", "skipped:", *(f"- {s['what']}: {s['why']}" for s in skipped)]
    errors = report.get("errors", [])
    if errors:
        lines += ["", "errors:", *(f"- {e['what']}: {e['error']}" for e in errors)]
    return "\n".join(lines) + "\n"


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return ["", title, fmt.format(*header), *(fmt.format(*row) for row in rows)]


def _number(value: Any, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else "-"


def _training_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for run in runs:
        if "error" in run:
            rows.append([run["task"], run.get("device", "?"), "-", "-", "-", "ERROR", "-", "-", "-"])
            continue
        amp = f"{'on' if run['amp_requested'] else 'off'}/{'on' if run['amp_active'] else 'off'}"
        rows.append(
            [
                run["task"],
                run["device"],
                amp,
                f"{run['parameter_dtype']}@{run['parameter_device']}",
                ",".join(run["train_forward_outputs"]),
                _number(run["samples_per_s"]),
                f"{run['epochs_run']}" + (" (cut)" if run["truncated"] else ""),
                f"{run['quality_metric']} {run['quality_value']:.3f}",
                "yes" if run["loss_finite"] else "NO",
            ]
        )
    header = ["task", "device", "amp req/on", "params", "outputs in training", "samples/s", "epochs"]
    header += ["validation", "finite"]
    return _table("training (Trainer as the job builds it; samples/s after a warm-up epoch)", header, rows)


def _job_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            run["task"],
            str(run.get("returncode")),
            _number(run.get("seconds"), 1),
            ",".join(run.get("checkpoint", {}).get("weight_locations", [])) or "-",
            "yes" if run.get("servable") else "no",
            run.get("last_metrics") or run.get("error", "-"),
        ]
        for run in runs
    ]
    header = ["task", "rc", "s", "trained on", "servable", "last epoch"]
    return _table("training job (python -m training_jobs.train, SageMaker layout)", header, rows)


def _serving_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for run in runs:
        loaded = run.get("model_loaded_on") or "?"
        if not run.get("loads"):
            rows.append([run["task"], run["mode"], loaded, "-", "-", "-", "-", "-", run.get("error", "-")])
        for load in run.get("loads", []):
            rows.append(
                [
                    run["task"],
                    run["mode"],
                    loaded,
                    f"{load['instances_per_request']} x {load['concurrency']}",
                    _number(load["rps"]),
                    _number(load["rows_per_s"]),
                    _number(load["p50_ms"], 2),
                    _number(load["p99_ms"], 2),
                    str(load["errors"]),
                ]
            )
    header = ["task", "mode", "model on", "instances x callers", "req/s", "rows/s", "p50 ms", "p99 ms"]
    header += ["errors"]
    return _table("serving (python -m handlers.serving.server, 1 worker, batching on)", header, rows)


# -------------------------------------------------------------------------------------- environment


def probe_imports(probes: Mapping[str, str] = PROBES) -> dict[str, dict[str, Any]]:
    """Per distribution: whether its module imports here, and its version (or the import error)."""
    found: dict[str, dict[str, Any]] = {}
    for distribution, module in probes.items():
        try:
            imported = importlib.import_module(module)
        except Exception as exc:  # ImportError, or a broken install failing on import
            found[distribution] = {"importable": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        version = getattr(imported, "__version__", None)
        if not isinstance(version, str):
            try:
                version = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                version = "?"
        found[distribution] = {"importable": True, "version": version}
    return found


def missing(imports: Mapping[str, Mapping[str, Any]], needed: Sequence[str]) -> list[str]:
    return [name for name in needed if not imports.get(name, {}).get("importable")]


def nvidia_smi(*query: str) -> list[str] | None:
    """Lines of ``nvidia-smi`` output for ``query`` (CSV, no header), or None without the tool."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", *query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"{type(exc).__name__}: {exc}"]
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] or [done.stderr.strip()]


def base_environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia_smi": nvidia_smi("--query-gpu=name,driver_version,memory.total,memory.used"),
    }


# ---------------------------------------------------------------------------------------- the check


class Check:
    """One run of the check: the report, the budget, and the steps that fill it."""

    def __init__(self, out: Path, plan: Plan, clock: Clock, report: dict[str, Any], scratch: Path) -> None:
        self.out = out
        self.scratch = scratch  # removed at the end of the run
        self.plan = plan
        self.clock = clock
        self.report = report
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        self.report["wall_s"] = round(self.clock.elapsed(), 1)
        write_report(self.out, self.report)

    def skip(self, what: str, why: str) -> None:
        self.report["skipped"].append({"what": what, "why": why})
        print(f"  skipped {what}: {why}", flush=True)
        self.save()

    def error(self, what: str, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        self.report["errors"].append(
            {"what": what, "error": text[:500], "traceback": traceback.format_exc()[-2000:]}
        )
        print(f"  FAILED {what}: {text[:300]}", flush=True)
        self.save()
        return text[:500]

    def fits(self, what: str, needed_s: float, until: float | None = None) -> bool:
        """Whether ``needed_s`` more seconds fit before ``until`` (default: the end of the budget)."""
        left = (until if until is not None else self.clock.deadline) - time.monotonic() - FINAL_RESERVE_S
        if left >= needed_s:
            return True
        self.skip(what, f"time budget: {max(0.0, left):.0f} s left, about {needed_s:.0f} s needed")
        return False

    # -- training ---------------------------------------------------------------------------------

    def training(
        self, trainer: ModuleType, tasks: Sequence[str], splits: Mapping[str, Path], devices: Sequence[Any]
    ) -> None:
        until = self.clock.started + self.plan.budget_s * self.plan.training_share
        runs: list[dict[str, Any]] = self.report["training"]["runs"]
        for name in tasks:
            task = get_task(name)
            for device in devices:
                for amp in (False, True):
                    what = f"training {name} on {device} amp {'on' if amp else 'off'}"
                    if not self.fits(what, 2.0, until):
                        continue
                    print(f"- {what}", flush=True)
                    with tempfile.TemporaryDirectory(prefix="train-", dir=self.scratch) as work:
                        try:
                            result = trainer.train_run(
                                task,
                                splits[name],
                                Path(work),
                                device=device,
                                amp=amp,
                                epochs=self.plan.epochs(task),
                                deadline=until,
                            )
                        except Exception as exc:
                            runs.append({"task": name, "device": str(device), "amp_requested": amp})
                            runs[-1]["error"] = self.error(what, exc)
                            continue
                    runs.append({"task": name, "model": task.model_name, **result})
                    if result["truncated"]:
                        self.skip(f"{what}: epochs after {result['epochs_run']}", "time budget")
                    print(
                        f"  {result['samples_per_s']} samples/s, {task.quality_metric} "
                        f"{result['quality_value']:.3f}, outputs {result['train_forward_outputs']}",
                        flush=True,
                    )
                    self.save()

    # -- the training job and its model folder -----------------------------------------------------

    def training_job(self, trainer: ModuleType, name: str, splits: Path, gpu: bool) -> Path | None:
        """Run the job's entry point on ``name``'s splits; returns the model folder if servable."""
        what = f"training job {name}"
        if not self.fits(what, JOB_S):
            return None
        print(f"- {what} ({'GPU visible' if gpu else 'CPU only'})", flush=True)
        root = Path(tempfile.mkdtemp(prefix=f"job-{name}-", dir=self.scratch))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "MLP_"))}
        env.update(
            MLP_SM_ROOT=str(root),
            SM_MODEL_DIR=str(root / "model"),
            SM_CHANNEL_TRAIN=str(splits / "train"),
            SM_CHANNEL_VALIDATION=str(splits / "validation"),
            PYTHONUNBUFFERED="1",
        )
        if not gpu:
            env.update(CPU_ONLY)
        command = [sys.executable, "-m", "training_jobs.train", "--task", name]
        command += ["--epochs", str(self.plan.job_epochs)]
        log = self.logs / f"training-job-{name}.log"
        run: dict[str, Any] = {"task": name, "gpu_visible": gpu, "epochs": self.plan.job_epochs}
        self.report["training_job"]["runs"].append(run)
        started = time.perf_counter()
        try:
            run["returncode"] = run_process(command, env, log, timeout_s=max(5.0, self.clock.left() - 5))
        except Exception as exc:
            run["error"] = self.error(what, exc)
            return None
        finally:
            run["seconds"] = round(time.perf_counter() - started, 2)
        metrics = [line for line in _read(log).splitlines() if line.startswith(METRIC_PREFIX)]
        run["last_metrics"] = metrics[-1].removeprefix(METRIC_PREFIX).strip() if metrics else None
        model_dir = root / "model"
        files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
        run["model_files"] = [f for f in files if not f.startswith("code/models/")]
        run["servable"] = {"model.pt", "model_config.json", "code/inference.py"} <= set(files)
        try:
            run["checkpoint"] = trainer.checkpoint_locations(root / "checkpoints")
        except Exception as exc:
            run["checkpoint_error"] = self.error(f"{what}: reading its checkpoint", exc)
        if run["returncode"] != 0 or not run["servable"]:
            run["error"] = f"exit {run['returncode']}; log tail: {_read(log)[-300:]}"
            self.report["errors"].append({"what": what, "error": run["error"]})
        self.save()
        return model_dir if run["servable"] else None

    # -- serving -----------------------------------------------------------------------------------

    def serving(
        self, name: str, model_dir: Path, splits: Path, mode: str, extra_env: Mapping[str, str]
    ) -> None:
        what = f"serving {name} ({mode})"
        if not self.fits(what, self.plan.serve_cost_s()):
            return
        print(f"- {what}", flush=True)
        task = get_task(name)
        instances = [
            list(r.features) if isinstance(r.features, tuple) else r.features
            for r in read_records(task, splits / "test" / task.file_name)
        ]
        port = free_port()
        run: dict[str, Any] = {"task": name, "mode": mode, "env": dict(extra_env), "loads": []}
        self.report["serving"]["runs"].append(run)
        spec = ServerSpec(
            name=f"{name}-{mode}",
            command=[sys.executable, "-m", "handlers.serving.server", "--model-dir", str(model_dir)]
            + ["--port", str(port), "--workers", "1", "--log-level", "info"],
            invoke_path="/invocations",
            settings={"workers": 1, "batching": True},
            env=dict(extra_env),
            cwd=REPO,
            metrics_path="/metrics",
            ready_timeout_s=max(10.0, min(120.0, self.clock.left() - 10)),
        )
        server = ModelServer(spec, port, self.logs / f"server-{name}-{mode}.log")
        started = time.perf_counter()
        try:
            server.start(json_body(instances[:2]))
            run["ready_s"] = round(time.perf_counter() - started, 2)
            log = _read(server.log_path)
            run.update(server_facts(log))
            run["gpu_memory"] = gpu_memory_of([p["pid"] for p in server.processes()])
            for rows, concurrency in self.plan.loads:
                if not self.fits(
                    f"{what}: {rows} x {concurrency}", self.plan.warmup_s + self.plan.window_s + 2
                ):
                    break
                bodies = [json_body(batch) for batch in batches(instances, rows, 64 if rows == 1 else 16)]
                requests = [build_request(spec.invoke_path, port, body) for body in bodies]
                result = run_load(
                    port,
                    requests,
                    concurrency=concurrency,
                    warmup_s=self.plan.warmup_s,
                    duration_s=self.plan.window_s,
                    grace_s=10.0,
                )
                load = {"instances_per_request": rows, **asdict(result)}
                load["rows_per_s"] = round(result.rps * rows, 1)
                run["loads"].append(load)
                print(
                    f"  {rows} x {concurrency}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                    f"p99 {result.p99_ms:.2f} ms, errors {result.errors}",
                    flush=True,
                )
                if result.errors:
                    self.report["errors"].append(
                        {"what": f"{what}: {rows} x {concurrency}", "error": "; ".join(result.error_samples)}
                    )
                self.save()
            if run["gpu_memory"] is not None:
                run["gpu_memory_after_load"] = gpu_memory_of([p["pid"] for p in server.processes()])
            status, body = http_get(port, "/metrics")
            run["server_metrics"] = json.loads(body) if status == 200 else {"status": status}
        except Exception as exc:
            run["error"] = self.error(what, exc)
            run.setdefault("model_loaded_on", server_facts(_read(server.log_path)).get("model_loaded_on"))
        finally:
            server.stop()
        self.save()


class ModelServer(Server):
    """``bench.serving``'s server process (its own process group; ``stop`` sends SIGTERM, then
    SIGKILL, to the whole group), ready once ``/ping`` is 200 and one invocation answers with one
    prediction per instance."""

    def _wait_ready(self, sample_body: bytes) -> None:
        expected = len(json.loads(sample_body)["instances"])
        deadline = time.monotonic() + self.spec.ready_timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if http_get(self.port, "/ping")[0] == 200:
                    status, body = http_post(self.port, self.spec.invoke_path, sample_body)
                    predictions = json.loads(body).get("predictions") if status == 200 else None
                    if isinstance(predictions, list) and len(predictions) == expected:
                        return
                    last = f"HTTP {status}: {body[:300]!r}"
            except (OSError, ValueError, AttributeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)
        raise RuntimeError(f"not ready after {self.spec.ready_timeout_s:.0f} s ({last}):\n{self.log_tail()}")


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    return http_request(port, "GET", path, None, timeout)


def http_post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    return http_request(port, "POST", path, body, timeout)


def json_body(instances: Sequence[Any]) -> bytes:
    return json.dumps({"instances": list(instances)}).encode()


def batches(instances: Sequence[Any], size: int, count: int) -> Iterator[list[Any]]:
    """``count`` requests of ``size`` instances each, cycling through ``instances``."""
    for index in range(count):
        yield [instances[(index * size + k) % len(instances)] for k in range(size)]


_LOADED = re.compile(r"loaded (\S+) on (\S+)")
_THREADS = re.compile(r"(\d+) worker\(s\) x (\d+) torch thread")


def server_facts(log: str) -> dict[str, Any]:
    """What the server's log says: the device ``model_fn`` loaded the model on, its threads."""
    facts: dict[str, Any] = {}
    loaded = _LOADED.search(log)
    if loaded:
        facts["model"], facts["model_loaded_on"] = loaded.group(1), loaded.group(2)
    threads = _THREADS.search(log)
    if threads:
        facts["workers"], facts["torch_threads"] = int(threads.group(1)), int(threads.group(2))
    return facts


def gpu_memory_of(pids: Sequence[int]) -> dict[str, Any] | None:
    """GPU memory (MiB) ``nvidia-smi`` shows for ``pids``, and every compute process it lists
    (in a container its pids may not be ours); None without ``nvidia-smi``."""
    lines = nvidia_smi("--query-compute-apps=pid,used_memory")
    if lines is None:
        return None
    apps: dict[int, float] = {}
    for line in lines:
        with contextlib.suppress(ValueError):
            pid, used = (part.strip() for part in line.split(",", 1))
            apps[int(pid)] = float(used)
    return {"server_mib": {str(p): apps[p] for p in pids if p in apps}, "all_compute_apps": lines}


def run_process(command: Sequence[str], env: Mapping[str, str], log: Path, timeout_s: float) -> int:
    """Run ``command`` in its own process group (output to ``log``); the group is killed on a
    timeout or any error, so nothing it started outlives this call."""
    with log.open("ab") as handle:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            list(command),
            cwd=REPO,
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def findings(report: Mapping[str, Any]) -> list[str]:
    """Plain statements drawn from what was observed (nothing assumed)."""
    found = []
    cuda_runs = [r for r in report["training"]["runs"] if "error" not in r and r["device"].startswith("cuda")]
    for run in cuda_runs:
        if run["amp_requested"] and not any("float16" in o for o in run["train_forward_outputs"]):
            found.append(f"training {run['task']} on cuda with amp: outputs {run['train_forward_outputs']}")
    if any(not r["loss_finite"] for r in report["training"]["runs"] if "error" not in r):
        found.append("a training run produced a non-finite loss (see training.runs[].train_loss)")
    for run in report["serving"]["runs"]:
        loaded = run.get("model_loaded_on")
        if run["mode"] == "gpu-visible" and loaded and not loaded.startswith("cuda"):
            found.append(f"serving {run['task']}: the GPU was visible but the model loaded on {loaded}")
        if run["mode"] == "cpu" and loaded and loaded != "cpu":
            found.append(f"serving {run['task']}: CUDA_VISIBLE_DEVICES='' but the model loaded on {loaded}")
    return found + comparisons(report)


def comparisons(report: Mapping[str, Any]) -> list[str]:
    """CUDA against CPU (and AMP on against off) where both sides ran."""
    found = []
    runs = [r for r in report["training"]["runs"] if "error" not in r]
    by_run = {(r["task"], r["device"].split(":")[0], r["amp_requested"]): r for r in runs}
    for task in dict.fromkeys(r["task"] for r in runs):
        cpu, cuda, amp = (
            by_run.get((task, d, a)) for d, a in (("cpu", False), ("cuda", False), ("cuda", True))
        )
        parts = []
        if cpu and cuda:
            parts.append(f"cuda/cpu samples/s {_ratio(cuda['samples_per_s'], cpu['samples_per_s'])}")
        if cuda and amp:
            parts.append(
                f"cuda amp on/off samples/s {_ratio(amp['samples_per_s'], cuda['samples_per_s'])}, "
                f"{cuda['quality_metric']} {cuda['quality_value']:.3f} -> {amp['quality_value']:.3f}"
            )
        if parts:
            found.append(f"training {task}: " + "; ".join(parts))
    served = {(r["task"], r["mode"]): r for r in report["serving"]["runs"]}
    for (task, mode), gpu in served.items():
        cpu = served.get((task, "cpu"))
        if mode != "gpu-visible" or cpu is None:
            continue
        cpu_loads = {(x["instances_per_request"], x["concurrency"]): x for x in cpu.get("loads", [])}
        for load in gpu.get("loads", []):
            other = cpu_loads.get((load["instances_per_request"], load["concurrency"]))
            if other:
                found.append(
                    f"serving {task} {load['instances_per_request']} x {load['concurrency']}: "
                    f"p50 {load['p50_ms']:.2f} vs {other['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} vs "
                    f"{other['p99_ms']:.2f} ms, req/s {_ratio(load['rps'], other['rps'])} (GPU vs CPU)"
                )
    return found


def _ratio(numerator: Any, denominator: Any) -> str:
    if isinstance(numerator, int | float) and isinstance(denominator, int | float) and denominator > 0:
        return f"x{numerator / denominator:.2f}"
    return "-"


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_check", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--out", type=Path, help="folder for the report, summary and logs")
    parser.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="cuda: the CUDA and the CPU half; cpu: the CPU half only; auto: cuda where available",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (a CPU machine, ~1 minute)")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="wall-clock budget (full 330, quick 110)"
    )
    parser.add_argument("--tasks", nargs="+", default=sorted(TASKS), choices=sorted(TASKS))
    parser.add_argument(
        "--raw-dir",
        type=Path,
        help="use the raw files --write-raw wrote there instead of generating them (no scikit-learn needed)",
    )
    parser.add_argument(
        "--write-raw", type=Path, metavar="DIR", help="only write every task's raw file to DIR"
    )
    args = parser.parse_args(argv)
    if args.out is None and args.write_raw is None:
        parser.error("--out is required")
    return args


def write_raw_files(directory: Path, tasks: Sequence[str]) -> int:
    """``directory/<task>/<task>.<ext>`` per task: the raw data ``--raw-dir`` takes elsewhere."""
    from training_jobs.datasets import write_raw  # noqa: PLC0415 - scikit-learn, only in this mode

    for name in tasks:
        print(write_raw(name, directory / name))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_raw is not None:
        return write_raw_files(args.write_raw, args.tasks)
    plan = QUICK if args.quick else FULL
    if args.budget_s is not None:
        plan = dataclasses.replace(plan, budget_s=args.budget_s)
    clock = Clock(plan.budget_s)
    # where the report lies is not part of it
    report = new_report(
        {k: v for k, v in vars(args).items() if k not in {"out", "write_raw"}}
        | {"raw_dir": args.raw_dir is not None},
        plan,
    )
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        check = Check(args.out, plan, clock, report, Path(scratch))
        try:
            return _run(check, args)
        except (KeyboardInterrupt, SystemExit) as exc:
            check.report["errors"].append({"what": "run", "error": f"interrupted ({type(exc).__name__})"})
            return EXIT_INCOMPLETE
        finally:
            signal.signal(signal.SIGTERM, previous)
            report["finished_at"] = _now()
            report["findings"] = findings(report)
            check.save()
            print(f"\n{summarize(report)}", flush=True)


def _run(check: Check, args: argparse.Namespace) -> int:
    report, plan = check.report, check.plan
    print(f"gpu_check: {plan.name} run, budget {plan.budget_s:.0f} s; environment ...", flush=True)
    env = base_environment()
    env["imports"] = probe_imports()
    report["environment"] = env
    check.save()
    absent = missing(env["imports"], NEEDED_TO_TRAIN + (() if args.raw_dir else NEEDED_TO_GENERATE))
    if absent:
        check.skip("training and serving", f"cannot import {', '.join(absent)}")
        return EXIT_MISSING
    from bench import _gpu_check_train as trainer  # noqa: PLC0415 - only once torch is known to import

    env["torch"] = trainer.torch_environment()
    cuda = choose_halves(report, bool(env["torch"]["cuda_available"]), args.device)
    print("".join(f"  {half} half: {what}\n" for half, what in report["halves"].items()), end="", flush=True)
    check.save()

    splits = _prepare(check, trainer, args)
    tasks = [name for name in args.tasks if name in splits]
    devices = [trainer.cuda_device(), trainer.cpu_device()] if cuda else [trainer.cpu_device()]
    check.training(trainer, tasks, splits, devices)

    no_server = missing(env["imports"], NEEDED_TO_SERVE)
    if no_server:
        check.skip("serving", f"cannot import {', '.join(no_server)}")
    modes: list[tuple[str, dict[str, str]]] = [("gpu-visible", {})] if cuda else []
    modes.append(("cpu", dict(CPU_ONLY)))
    for name in tasks:
        model_dir = check.training_job(trainer, name, splits[name], gpu=cuda)
        if model_dir is None or no_server:
            continue
        for mode, extra_env in modes:
            check.serving(name, model_dir, splits[name], mode, extra_env)
    report["complete"] = not report["skipped"] and not report["errors"]
    return EXIT_OK if report["complete"] else EXIT_INCOMPLETE


def choose_halves(report: dict[str, Any], cuda_available: bool, device: str) -> bool:
    """Record which halves run; True when the CUDA half does. ``--device cuda`` without CUDA is an
    error (the run is not what was asked); ``--device cpu`` or ``auto`` without CUDA is not."""
    cuda = cuda_available and device != "cpu"
    if cuda:
        report["halves"]["cuda"] = "run"
    elif not cuda_available:
        report["halves"]["cuda"] = "skipped: cuda not available (torch.cuda.is_available() is False)"
        if device == "cuda":
            report["errors"].append({"what": "cuda half", "error": "--device cuda, but cuda not available"})
    else:
        report["halves"]["cuda"] = "skipped: not requested (--device cpu)"
    report["halves"]["cpu"] = "run"
    return cuda


def _prepare(check: Check, trainer: ModuleType, args: argparse.Namespace) -> dict[str, Path]:
    """Processed splits per task (raw data generated here, or read from ``--raw-dir``)."""
    splits: dict[str, Path] = {}
    for name in args.tasks:
        root = check.scratch / "data" / name
        try:
            with contextlib.redirect_stdout(sys.stderr):
                if args.raw_dir is not None:
                    splits[name] = trainer.prepared_from_raw(name, args.raw_dir, root)
                else:
                    splits[name] = trainer.prepared(name, root)
        except Exception as exc:
            check.error(f"preparing the {name} data", exc)
    return splits


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(143)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
