"""Fixtures of the local training runner tests: two moto backends and small entry-point scripts.

Every runner test that talks to AWS runs twice: against moto in-process (``mock_aws``) and
against moto's HTTP server on loopback, where the clients go over real HTTP like local mode's.
"""

from __future__ import annotations

import io
import tarfile
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from emulator.training.job import TrainingJobSpec
from emulator.training.runner import LocalTrainingRunner

REGION = "us-east-1"
BUCKET = "mlp-training-test"
ROLE_ARN = "arn:aws:iam::123456789012:role/mlp-training"
# Short, so a job past its runtime is stopped quickly in tests (SageMaker waits 120 s).
STOP_GRACE_SECONDS = 1.0


@dataclass
class Aws:
    """Clients of one moto backend, with the test bucket already created."""

    s3: Any
    sagemaker: Any
    bucket: str = BUCKET

    def put(self, key: str, body: bytes | str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_tar(self, key: str) -> dict[str, bytes]:
        """The regular files of a gzipped tar object, by member name."""
        with tarfile.open(fileobj=io.BytesIO(self.get(key)), mode="r:gz") as archive:
            return {m.name: _read_member(archive, m) for m in archive.getmembers() if m.isfile()}

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def prepare_task(task: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in task's dataset, written raw and prepared as the pipeline's Prepare step does."""
    from training_jobs import datasets, prepare  # noqa: PLC0415 - torch-free, but only these tests need it

    raw = datasets.write_raw(task, tmp_path_factory.mktemp("raw"))
    out = tmp_path_factory.mktemp("prepared")
    prepare.prepare(task, raw.parent, out)
    return out


def upload_splits(aws: Aws, prepared: Path, prefix: str = "processed/run-1") -> dict[str, str]:
    """The prepared splits under ``prefix`` in the test bucket; the train and validation channels."""
    for path in prepared.rglob("*"):
        if path.is_file():
            aws.put(f"{prefix}/{path.relative_to(prepared).as_posix()}", path.read_bytes())
    base = f"s3://{aws.bucket}/{prefix}"
    return {"train": f"{base}/train", "validation": f"{base}/validation"}


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = archive.extractfile(member)
    assert stream is not None
    return stream.read()


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """One moto server on loopback for the session (a port the OS picks); reset per test."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _clients(endpoint_url: str | None = None) -> Aws:
    aws = Aws(
        s3=boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url),
        sagemaker=boto3.client("sagemaker", region_name=REGION, endpoint_url=endpoint_url),
    )
    aws.s3.create_bucket(Bucket=BUCKET)
    return aws


@pytest.fixture
def in_process_aws(aws_credentials: None) -> Iterator[Aws]:
    with mock_aws():
        yield _clients()


@pytest.fixture
def server_aws(aws_credentials: None, moto_server_url: str) -> Iterator[Aws]:
    # A clean server per test, as mock_aws gives in-process.
    urllib.request.urlopen(urllib.request.Request(f"{moto_server_url}/moto-api/reset", method="POST"))
    yield _clients(moto_server_url)


@pytest.fixture(params=["in_process", "loopback_server"])
def aws(request: pytest.FixtureRequest) -> Aws:
    """Each test that takes ``aws`` runs against both moto backends."""
    fixture = "in_process_aws" if request.param == "in_process" else "server_aws"
    return request.getfixturevalue(fixture)


@pytest.fixture
def runner(aws: Aws, tmp_path: Path) -> LocalTrainingRunner:
    return LocalTrainingRunner(
        aws.s3, aws.sagemaker, tmp_path / "jobs", stop_grace_seconds=STOP_GRACE_SECONDS
    )


@pytest.fixture
def in_process_runner(in_process_aws: Aws, tmp_path: Path) -> LocalTrainingRunner:
    """For paths whose behaviour does not depend on the transport (one backend is enough)."""
    return LocalTrainingRunner(
        in_process_aws.s3, in_process_aws.sagemaker, tmp_path / "jobs", stop_grace_seconds=STOP_GRACE_SECONDS
    )


@pytest.fixture
def write_script(tmp_path: Path) -> Callable[[str, str], Path]:
    """Writes one of the entry points below (or any source) into ``tmp_path/scripts``."""

    def write(name: str, source: str | None = None) -> Path:
        path = tmp_path / "scripts" / f"{name}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(source if source is not None else SCRIPTS[name]))
        return path

    return write


@pytest.fixture
def new_spec() -> Callable[..., TrainingJobSpec]:
    """A job spec for a script, writing under ``s3://<test bucket>/models``; fields overridable."""

    def make(script: Path, job_name: str = "job-1", **overrides: Any) -> TrainingJobSpec:
        fields: dict[str, Any] = {
            "job_name": job_name,
            "entry_point": str(script),
            "output_s3_uri": f"s3://{BUCKET}/models",
            "role_arn": ROLE_ARN,
        }
        fields.update(overrides)
        return TrainingJobSpec(**fields)

    return make


# Entry points, written the way a training script reads SageMaker's contract. The torch one
# trains (a mean of the CSV column); the others stay torch-free so they start fast.
SCRIPTS = {
    "train": """
        import csv, json, os, pathlib
        import torch

        channel = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
        values = [float(row["y"]) for f in sorted(channel.rglob("*.csv")) for row in csv.DictReader(f.open())]
        ckpt = pathlib.Path(os.environ["MLP_SM_ROOT"]) / "checkpoints" / "state.json"
        step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
        print(f"resumed_from={step}")
        data = torch.tensor(values)
        estimate = torch.zeros(())
        for epoch in range(3):
            estimate = estimate + 0.5 * (data.mean() - estimate)
            loss = float(((data - estimate) ** 2).mean())
            print(f"epoch={epoch} train_loss={loss:.6f}", flush=True)
        ckpt.write_text(json.dumps({"step": step + 1}))
        model_dir = pathlib.Path(os.environ["SM_MODEL_DIR"])
        (model_dir / "model.json").write_text(json.dumps({"mean": float(data.mean())}))
        (model_dir / "extra").mkdir()
        (model_dir / "extra" / "vocab.txt").write_text("a b c")
        pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt").write_text("ok")
    """,
    "metrics": """
        for loss in (0.5, 0.25, 0.125):
            print(f"train_loss={loss}")
    """,
    "resume": """
        import json, os, pathlib
        ckpt = pathlib.Path(os.environ["MLP_SM_ROOT"]) / "checkpoints" / "state.json"
        step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
        print(f"resumed_from={step}")
        ckpt.write_text(json.dumps({"step": step + 1}))
        pathlib.Path(os.environ["SM_MODEL_DIR"], "model.json").write_text(json.dumps({"step": step + 1}))
    """,
    "inspect": """
        import json, os, pathlib, sys
        root = pathlib.Path(os.environ["MLP_SM_ROOT"])
        seen = {
            "argv": sys.argv[1:],
            "env": {k: v for k, v in os.environ.items() if k.startswith("SM_") or k == "MLP_SM_ROOT"},
            "channel_files": sorted(
                str(p.relative_to(os.environ["SM_CHANNEL_TRAIN"]))
                for p in pathlib.Path(os.environ["SM_CHANNEL_TRAIN"]).rglob("*") if p.is_file()
            ),
        }
        pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json").write_text(json.dumps(seen))
    """,
    "fail": """
        import os, pathlib
        root = pathlib.Path(os.environ["MLP_SM_ROOT"])
        (root / "checkpoints" / "state.json").write_text('{"step": 7}')
        print("loss=0.9")
        (root / "output" / "failure").write_text("Loss diverged: got 'nan' at step 7 (lr=10.0)")
        raise SystemExit(1)
    """,
    "crash": """
        import sys
        print("starting", flush=True)
        raise ValueError("column 'y' is missing")
    """,
    "slow": """
        import os, pathlib, signal, sys, time
        root = pathlib.Path(os.environ["MLP_SM_ROOT"])
        def save_and_exit(signum, frame):
            # SageMaker's SIGTERM window: save a checkpoint before the job is ended.
            (root / "checkpoints" / "state.json").write_text('{"step": 1}')
            sys.exit(0)
        signal.signal(signal.SIGTERM, save_and_exit)
        print("training forever", flush=True)
        while True:
            time.sleep(0.05)
    """,
    "stubborn": """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        while True:
            time.sleep(0.05)
    """,
    "distributed": """
        import os, pathlib, sys
        import torch
        import torch.distributed as dist

        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group("gloo")
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        # Both ranks share one pipe: one write per line keeps lines whole (print writes "\\n" apart).
        sys.stdout.write(f"rank={rank} world_size={world} total={total.item()}\\n")
        if rank == 0:
            model_dir = pathlib.Path(os.environ["SM_MODEL_DIR"])
            (model_dir / "rank0.txt").write_text(f"world_size={world} total={total.item()}")
        dist.destroy_process_group()
    """,
}
