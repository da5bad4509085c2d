"""Warm-up passes before /ping turns healthy, precision by config, and workers forced onto the CPU:
the real server as a subprocess."""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch

from .conftest import DIGIT, running_server

# predict_fn = 2x + 1; it writes the rows of every pass to $MS_TEST_ROWS and is held while
# $MS_TEST_GATE exists, so a test can keep the warm-up running without relying on timing.
COUNTING_INFERENCE = textwrap.dedent(
    """
    import os
    import time


    def model_fn(model_dir):
        return "affine"


    def predict_fn(data, model):
        with open(os.environ["MS_TEST_ROWS"], "a") as rows:
            rows.write(f"{data.shape[0]}\\n")
        gate = os.environ.get("MS_TEST_GATE")
        while gate and os.path.exists(gate):
            time.sleep(0.005)
        return data * 2 + 1
    """
)

VISIBLE_DEVICES_INFERENCE = textwrap.dedent(
    """
    import json
    import os


    def model_fn(model_dir):
        return "echo"


    def predict_fn(data, model):
        return data


    def output_fn(prediction, accept):
        return json.dumps({"visible": os.environ.get("CUDA_VISIBLE_DEVICES")}), "application/json"
    """
)


def counting_artifact(root: Path, sample: bytes | None) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(COUNTING_INFERENCE)
    if sample is not None:
        (root / "code" / "sample-request.json").write_bytes(sample)
    return root


def rows_seen(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_ping_stays_503_until_the_warm_up_passes_are_done_and_they_count_in_no_metric(tmp_path):
    # GIVEN an artifact with a sample request of one row, and its forward pass held
    model_dir = counting_artifact(tmp_path / "model", json.dumps([[1.0, 2.0]]).encode())
    rows, gate = tmp_path / "rows", tmp_path / "gate"
    gate.touch()
    env = {"MS_TEST_ROWS": str(rows), "MS_TEST_GATE": str(gate)}
    with running_server(model_dir, "--max-batch-size", "8", log_dir=tmp_path, **env) as server:
        # WHEN the server has loaded the model and the first warm-up pass is inside predict_fn
        server.wait_until(lambda: rows_seen(rows) == [1], "the first warm-up pass")
        # THEN /ping still says 503 and requests are refused as not ready
        assert server.ping_status() == 503
        assert server.invoke("[[3.0, 4.0]]").status == 503
        # WHEN the passes may finish
        server.open_gate()
        server.wait_ready()
        # THEN one row and a full batch ran, twice, through the model thread
        assert rows_seen(rows) == [1, 8, 1, 8]
        assert "warm-up: 4 passes" in server.log()
        # AND none of it shows in the metrics
        metrics = server.metrics()
        assert (metrics["requests"], metrics["batches"], metrics["rows"]) == (1, 0, 0)  # the 503 above
        assert metrics["responses_by_status"] == {"503": 1}
        # AND a real request is served and counted as the first forward pass
        reply = server.invoke("[[3.0, 4.0]]")
        assert (reply.status, reply.json()) == (200, [[7.0, 9.0]])
        assert server.metrics()["batches"] == 1


def test_a_broken_sample_request_fails_the_load_and_the_log_says_why(tmp_path):
    # GIVEN an artifact whose sample request is not JSON
    model_dir = counting_artifact(tmp_path / "model", b"{not json")
    rows = tmp_path / "rows"
    with running_server(model_dir, log_dir=tmp_path, MS_TEST_ROWS=str(rows)) as server:
        # WHEN it starts THEN it never turns healthy: it exits as a model that cannot load
        assert server.process.wait(timeout=60) == 3
        log = server.log()
    assert "the warm-up with code/sample-request.json failed: HTTP 400: malformed JSON" in log
    assert rows_seen(rows) == []


@pytest.mark.parametrize(
    ("sample", "env", "line"),
    [
        (None, {}, "no warm-up: the artifact carries no sample request (code/sample-request.json)"),
        (b"[[1.0, 2.0]]", {"MODEL_SERVER_WARMUP": "0"}, "warm-up off (MODEL_SERVER_WARMUP=0)"),
    ],
    ids=["no-sample-request", "switched-off"],
)
def test_without_warm_up_the_server_is_ready_at_once_and_says_why(tmp_path, sample, env, line):
    model_dir = counting_artifact(tmp_path / "model", sample)
    rows = tmp_path / "rows"
    with running_server(model_dir, log_dir=tmp_path, MS_TEST_ROWS=str(rows), **env) as server:
        server.wait_ready()
        assert rows_seen(rows) == []
        assert line in server.log()


def test_a_packaged_model_warms_up_with_the_sample_request_its_packager_wrote(trained_archive, tmp_path):
    # GIVEN the built-in packager's model.tar.gz (it writes the sample request from the model)
    with tarfile.open(trained_archive) as archive:
        sample = json.loads(archive.extractfile("code/sample-request.json").read())  # type: ignore[union-attr]
    assert len(sample["instances"]) == 1
    with running_server(trained_archive, log_dir=tmp_path) as server:
        # WHEN it is served THEN the built-in handler answered one row and a full batch, twice
        server.wait_ready()
        assert "warm-up: 4 passes" in server.log()
        reply = server.invoke(json.dumps({"instances": [DIGIT]}))
        assert reply.status == 200 and reply.json()["predictions"][0]["label"] in [str(d) for d in range(10)]


def test_bfloat16_by_config_answers_close_to_float32(mlp_artifact, tmp_path):
    body = json.dumps({"inputs": [[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0]]})
    answers = {}
    for precision in ("float32", "bfloat16"):
        with running_server(mlp_artifact, log_dir=tmp_path, MODEL_SERVER_PRECISION=precision) as server:
            server.wait_ready()
            reply = server.invoke(body)
            assert reply.status == 200, reply.body
            answers[precision] = torch.tensor(reply.json()["outputs"])
    assert "predict_fn runs under bfloat16 autocast on cpu" in server.log()
    torch.testing.assert_close(answers["bfloat16"], answers["float32"], atol=0.05, rtol=0.05)
    assert not torch.equal(answers["bfloat16"], answers["float32"])


def test_workers_forced_onto_the_cpu_see_no_gpu(tmp_path):
    # GIVEN a model whose answer is the CUDA_VISIBLE_DEVICES its worker process sees
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(VISIBLE_DEVICES_INFERENCE)
    # WHEN two workers run with the device forced to cpu, the supervisor having GPUs "0,1"
    env = {"MODEL_SERVER_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "0,1"}
    with running_server(model_dir, "--workers", "2", log_dir=tmp_path, **env) as server:
        server.wait_ready()
        answers = {server.invoke("[[1.0]]").json()["visible"] for _ in range(8)}
    # THEN each worker was pinned to no GPU before anything loaded torch
    assert answers == {""}
