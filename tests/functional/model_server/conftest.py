"""The model server as a real subprocess on a free loopback port, and the artifacts it serves.

Artifacts:
- ``trained_archive``: a digits model trained by our training code, packaged as ``model.tar.gz``
  (served by our own handler, ``code/inference.py``);
- ``mlp_artifact``: a hand-written DLC-layout archive folder: a TorchScript MLP saved as
  ``model.pth`` and a ``code/inference.py`` with only ``input_fn`` and ``output_fn``;
- ``gated_artifact``: default ``input_fn``/``output_fn``; ``predict_fn`` returns ``2x + 1`` and
  blocks while a gate file exists, so a test can hold a forward pass and queue requests behind it
  without relying on timing; ``model_fn`` can be held the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from emulator.ports import free_port
from handlers.serving.server import NATIVE_THREAD_VARIABLES
from training_jobs import package, prepare, train
from training_jobs.datasets import write_raw
from training_jobs.hyperparameters import parse_hyperparameters
from training_jobs.sm_env import TrainingEnv, TrainingPaths

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 60.0  # an upper bound for a condition to come true, never a timing assertion
DIGIT = [0.0] * 20 + [16.0] * 24 + [0.0] * 20

MLP_INFERENCE = textwrap.dedent(
    '''
    """Only input_fn and output_fn: the server's default model_fn / predict_fn do the rest."""
    import json

    import torch


    class UnsupportedType(Exception):
        status_code = 415


    def input_fn(body, content_type):
        if content_type != "application/json":
            raise UnsupportedType(f"only application/json, not {content_type}")
        return torch.tensor(json.loads(body)["inputs"], dtype=torch.float32)


    def output_fn(prediction, accept):
        return json.dumps({"outputs": prediction.tolist()}), "application/json"
    '''
)

GATED_INFERENCE = textwrap.dedent(
    '''
    """predict_fn = 2x + 1, held while $MS_TEST_GATE exists; model_fn held while
    $MS_TEST_LOAD_GATE exists. 666 in the input raises a plain error, a negative value another."""
    import os
    import time


    def _hold(variable):
        path = os.environ.get(variable)
        while path and os.path.exists(path):
            time.sleep(0.005)


    def model_fn(model_dir):
        _hold("MS_TEST_LOAD_GATE")
        return "affine"


    def predict_fn(data, model):
        _hold("MS_TEST_GATE")
        if (data == 666).any():
            raise RuntimeError(f"exploded in {__file__}")
        if (data < 0).any():
            raise ValueError("negative inputs break this model")
        return data * 2 + 1
    '''
)

TRANSFORM_INFERENCE = textwrap.dedent(
    """
    def model_fn(model_dir):
        return "upper"


    def transform_fn(model, body, content_type, accept):
        return body.upper(), "text/plain"
    """
)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running ``python -m handlers.serving.server`` and plain-HTTP helpers to talk to it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    gate: Path | None = None
    stopped: bool = field(default=False)

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        payload = body.encode() if isinstance(body, str) else body
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S)
        try:
            conn.request(method, path, body=payload, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def invoke(self, body: bytes | str, content_type: str = "application/json", **headers: str) -> Reply:
        return self.request("POST", "/invocations", body, {"Content-Type": content_type, **headers})

    def ping_status(self) -> int | None:
        """The /ping status, or None while nothing listens yet."""
        try:
            return self.request("GET", "/ping").status
        except OSError:
            return None

    def metrics(self) -> dict[str, Any]:
        """The answering worker's own view (JSON); without the header /metrics is Prometheus text."""
        return self.request("GET", "/metrics", headers={"Accept": "application/json"}).json()

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"server exited ({code}) waiting for {what}:\n{self.log()}")
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"gave up waiting for {what}:\n{self.log()}")

    def wait_ready(self) -> Server:
        self.wait_until(lambda: self.ping_status() == 200, "/ping 200")
        return self

    def close_gate(self) -> None:
        assert self.gate is not None
        self.gate.touch()

    def open_gate(self) -> None:
        assert self.gate is not None
        self.gate.unlink(missing_ok=True)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=WAIT_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server_env(**extra: str) -> dict[str, str]:
    # The server sizes the OpenMP/BLAS pools itself (from --torch-threads): none inherited.
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SM_", "SAGEMAKER_")) and k not in NATIVE_THREAD_VARIABLES
    }
    return {**inherited, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **extra}


@contextlib.contextmanager
def running_server(model_dir: Path, *args: str, log_dir: Path, **env: str) -> Iterator[Server]:
    """Start the server on a free port (not waiting for readiness); kill it if a test left it up."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "handlers.serving.server", "--model-dir", str(model_dir)]
            + ["--port", str(port), "--torch-threads", "1", *args],
            cwd=log_dir,
            env=server_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown can stop its workers too
        )
    gate = Path(env["MS_TEST_GATE"]) if "MS_TEST_GATE" in env else None
    server = Server(process, port, log_path, gate)
    try:
        yield server
    finally:
        if gate is not None:
            gate.unlink(missing_ok=True)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=WAIT_S)


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits model trained by our training code (one epoch): the folder SageMaker would tar."""
    base = tmp_path_factory.mktemp("digits")
    write_raw("digits", base / "raw")
    prepare.prepare("digits", base / "raw", base / "processed")
    splits = base / "processed"
    paths = TrainingPaths(base / "job")
    env = TrainingEnv(
        paths=paths,
        model_dir=paths.model_dir,
        output_data_dir=paths.output_data_dir,
        channels={"train": splits / "train", "validation": splits / "validation"},
        rank=0,
        world_size=1,
    )
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(io.StringIO()):
        train.run(env, parse_hyperparameters({"task": "digits", "epochs": "1"}))
    return paths.model_dir


@pytest.fixture(scope="session")
def trained_archive(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package.build_model_archive(trained_model_dir, tmp_path_factory.mktemp("archive") / "model.tar.gz")


@pytest.fixture(scope="session")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlp")
    torch.manual_seed(7)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    torch.jit.save(torch.jit.script(mlp), str(root / "model.pth"))
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(MLP_INFERENCE)
    return root


def _code_only_artifact(root: Path, source: str) -> Path:
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(source)
    return root


@pytest.fixture(scope="session")
def gated_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _code_only_artifact(tmp_path_factory.mktemp("gated"), GATED_INFERENCE)


@pytest.fixture(scope="session")
def transform_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _code_only_artifact(tmp_path_factory.mktemp("transform"), TRANSFORM_INFERENCE)


@pytest.fixture(scope="module")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")
