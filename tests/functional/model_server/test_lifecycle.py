"""Process life: settings precedence, graceful SIGTERM, several workers, a model that cannot load."""

from __future__ import annotations

import asyncio
import json
import signal
import threading

import pytest
import uvicorn

from handlers.serving import server as model_server
from handlers.serving.app import AppOptions, create_app

from .conftest import WAIT_S, Reply, running_server

SM_ENV = {
    "SM_MODEL_DIR": "/env/model",
    "SAGEMAKER_BIND_TO_PORT": "9090",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "4",
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": "12",
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2",
}


def _settings(argv: list[str], env: dict[str, str]) -> model_server.ServerSettings:
    return model_server.resolve_settings(model_server.parse_args(argv), env)


def test_arguments_beat_the_sagemaker_environment_which_beats_the_defaults():
    # GIVEN no arguments and no environment THEN the SageMaker container defaults apply
    bare = _settings([], {})
    assert (bare.model_dir, bare.port, bare.workers) == ("/opt/ml/model", 8080, 1)
    assert bare.max_body_bytes == 6 << 20
    assert (bare.max_batch_size, bare.max_batch_delay_ms, bare.batching) == (32, 5.0, True)
    # GIVEN the container's environment THEN it is used
    from_env = _settings([], SM_ENV)
    assert (from_env.model_dir, from_env.port, from_env.workers) == ("/env/model", 9090, 4)
    assert from_env.timeout_s == 12
    assert from_env.max_body_bytes == 2 << 20
    # GIVEN explicit arguments as well THEN they win
    argv = ["serve", "--model-dir", "/arg/model", "--port", "7070", "--workers", "2", "--no-batching"]
    explicit = _settings([*argv, "--torch-threads", "3"], SM_ENV)
    assert (explicit.model_dir, explicit.port, explicit.workers) == ("/arg/model", 7070, 2)
    assert (explicit.batching, explicit.torch_threads) == (False, 3)


def test_torch_threads_default_to_cores_divided_by_workers(monkeypatch):
    # GIVEN 8 cores
    monkeypatch.setattr(model_server, "_cores", lambda: 8)
    # THEN workers x threads never exceeds the cores
    assert _settings(["--workers", "2"], {}).torch_threads == 4
    assert _settings(["--workers", "3"], {}).torch_threads == 2
    assert _settings(["--workers", "16"], {}).torch_threads == 1


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--workers", "0"], {}), ([], {"SAGEMAKER_BIND_TO_PORT": "http"}), (["--max-batch-size", "0"], {})],
)
def test_unusable_settings_are_refused_with_their_name(argv, env):
    with pytest.raises(model_server.SettingsError):
        _settings(argv, env)


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(gated_artifact, tmp_path):
    gate = tmp_path / "gate"
    with running_server(gated_artifact, log_dir=tmp_path, MS_TEST_GATE=str(gate)) as server:
        server.wait_ready()
        # GIVEN a request inside predict_fn
        server.close_gate()
        replies: list[Reply] = []
        caller = threading.Thread(target=lambda: replies.append(server.invoke("[[4.0]]")), daemon=True)
        caller.start()
        server.wait_until(lambda: server.metrics()["model_busy"] == 1, "a request in flight")
        # WHEN the server gets SIGTERM while it runs
        server.process.send_signal(signal.SIGTERM)
        server.wait_until(lambda: server.ping_status() != 200, "/ping to stop answering 200")
        server.open_gate()
        caller.join(WAIT_S)
        # THEN the in-flight request still gets its answer and the process exits 0
        assert [r.status for r in replies] == [200]
        assert replies[0].json() == [[9.0]]
        assert server.process.wait(timeout=WAIT_S) == 0


def test_ping_turns_503_as_soon_as_shutdown_starts(gated_artifact):
    # GIVEN a worker's app with its model loaded, and the uvicorn server that runs it
    app = create_app(AppOptions(model_dir=gated_artifact))
    app.state.service.load()
    server = model_server._Server(uvicorn.Config(app), app.state.service)
    assert _asgi_get(app, "/ping") == (200, {"status": "healthy"})
    # WHEN SIGTERM reaches the server
    server.handle_exit(signal.SIGTERM, None)
    # THEN it stops (uvicorn drains) and /ping already says 503 for the load balancer
    assert server.should_exit is True
    assert _asgi_get(app, "/ping") == (503, {"status": "draining"})


def test_several_workers_serve_on_one_port_and_stop_cleanly(mlp_artifact, tmp_path):
    # GIVEN two worker processes of one torch thread each (running_server passes --torch-threads 1)
    with running_server(mlp_artifact, "--workers", "2", log_dir=tmp_path) as server:
        server.wait_ready()
        # WHEN requests arrive on new connections
        pids: set[int] = set()
        pool_sizes: set[str | None] = set()

        def answer_from_a_new_worker() -> bool:
            reply = server.invoke(json.dumps({"inputs": [[1.0, 2.0, 3.0, 4.0]]}))
            assert reply.status == 200
            metrics = server.metrics()
            pids.add(metrics["worker_pid"])
            pool_sizes.add(metrics["omp_num_threads"])
            return len(pids) == 2

        server.wait_until(answer_from_a_new_worker, "answers from both workers")
        # THEN both workers answer (each loaded the model) with OpenMP pools sized to their one
        # thread, and SIGTERM stops all with exit 0
        assert len(pids) == 2
        assert server.process.pid not in pids
        assert pool_sizes == {"1"}
        assert server.terminate() == 0


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [((), model_server.EXIT_LOAD_FAILED), (("--workers", "2"), model_server.EXIT_FAILED)],
    ids=["one-worker", "two-workers"],
)
def test_a_model_that_cannot_load_stops_the_server_with_a_clear_log(tmp_path, args, exit_code):
    # GIVEN a folder with no code and a model.pth that is not TorchScript
    artifact = tmp_path / "model"
    artifact.mkdir()
    (artifact / "model.pth").write_bytes(b"not a model")
    with running_server(artifact, *args, log_dir=tmp_path) as server:
        # THEN the server exits non-zero and says why
        assert server.process.wait(timeout=WAIT_S) == exit_code
        assert "not a TorchScript model" in server.log()


def _asgi_get(app: object, path: str) -> tuple[int, object]:
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], json.loads(body)
