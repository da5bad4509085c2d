"""Benchmark of the prediction API Lambda (not a test): cold import, warm overhead, zip size.

    .venv/bin/python bench/lambda_api.py [--repeats 7] [--requests 3000]

- cold import, as Lambda runs it: the handlers zip and the powertools layer are built, extracted
  into a task root and an ``/opt/python`` stand-in, and imported from there with nothing written
  (both are read-only in Lambda), with the environment the runtime sets (tracing on). Each import
  runs in a fresh interpreter, ``--repeats`` times, interleaved; medians are reported:
  ``import boto3`` (the baseline, from the environment as the runtime provides it), the handler
  module (target <= 1.5x boto3), the same artifacts without their bytecode (how they shipped
  before), the libraries the handler imports at module level without any of our code (the floor
  under the ratio), those plus Powertools' event handler (which the handler no longer uses), and
  cold start to the first answer.
- warm overhead: ``lambda_handler`` on the real API Gateway event with the endpoint replaced by an
  in-memory fake, so only the handler's own work is timed (target p50 <= 0.5 ms).
- the deployment zip (target <= 5 MB without the layer) and the layer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EVENT = REPO / "tests" / "events" / "apigw_predict.json"
ENV = {
    **os.environ,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "ENDPOINT_NAME": "bench-endpoint",
    "MODEL_VERSION": "1",
    "MODEL_INPUT_SCHEMA": json.dumps({"kind": "text", "max_chars": 2000}),
    "POWERTOOLS_TRACE_DISABLED": "true",
}
# What the Lambda runtime sets, with tracing on (the stack's functions run with Active tracing). In
# Lambda the X-Ray SDK samples locally (check_in_lambda): it builds no X-Ray API client at import,
# which it does everywhere else.
LAMBDA_RUNTIME_ENV = {
    **{k: v for k, v in ENV.items() if k != "POWERTOOLS_TRACE_DISABLED"},
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only: nothing compiled is kept
}
# What predict_api imports at module level from its libraries, and nothing of ours.
LIBRARIES = """
import botocore.config, botocore.exceptions
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, Field, TypeAdapter, create_model
Logger(service="bench"), Metrics(namespace="bench"), Tracer(auto_patch=False)
"""
# What Powertools' event handler would add (predict_api routes with a table instead; see its docstring).
EVENT_HANDLER = """
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
APIGatewayRestResolver()
"""
FIRST_ANSWER = """
import json, time
from handlers.api import endpoint_client
from handlers.api import handler as predict_api
sys.path.insert(0, {bench!r})
from lambda_api import FakeEndpoint, FakeContext
endpoint_client.runtime_client.set(FakeEndpoint())
answer = predict_api.lambda_handler(json.load(open({event!r})), FakeContext())
assert answer["statusCode"] == 200, answer
"""


class FakeEndpoint:
    """Answers instantly in the container's contract: the handler's own cost is all that is timed."""

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        count = len(json.loads(params["Body"])["instances"])
        payload = json.dumps({"predictions": ["ham"] * count, "confidence": [0.9] * count}).encode()
        return {"Body": io.BytesIO(payload), "InvokedProductionVariant": "AllTraffic"}


class FakeContext:
    function_name = "bench"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench-request"


def timed_in_fresh_interpreter(statement: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds ``statement`` takes in a new interpreter (interpreter start-up excluded)."""
    code = "import sys, time\nt0 = time.perf_counter()\n" + statement + "\nprint(time.perf_counter() - t0)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd, env=env
    )
    return float(result.stdout.strip().splitlines()[-1])


def build_zips(out_dir: Path) -> dict[str, Any]:
    """The handlers zip and the layer, built once for the whole run."""
    sys.path.insert(0, str(REPO))
    from infra import lambda_package as packaging  # noqa: PLC0415

    return {
        "handlers": packaging.build_handlers_zip(out_dir),
        "layer": packaging.build_layer_zip(out_dir, offline=True),
    }


def lambda_file_system(zips: dict[str, Any], root: Path, bytecode: bool) -> tuple[dict[str, str], Path]:
    """The zips extracted as Lambda lays them out; the environment and task root to import in."""
    task_root, opt = root / "task", root / "opt"
    zipfile.ZipFile(zips["handlers"].path).extractall(task_root)
    zipfile.ZipFile(zips["layer"].path).extractall(opt)
    if not bytecode:
        for cache in [*task_root.rglob("__pycache__"), *opt.rglob("__pycache__")]:
            shutil.rmtree(cache, ignore_errors=True)
    # Lambda's sys.path puts the task root, then the layer, before the runtime's boto3.
    python_path = os.pathsep.join([str(task_root), str(opt / "python")])
    return {**LAMBDA_RUNTIME_ENV, "LAMBDA_TASK_ROOT": str(task_root), "PYTHONPATH": python_path}, task_root


def cold(zips: dict[str, Any], repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        shipped, task_root = lambda_file_system(zips, Path(scratch) / "shipped", bytecode=True)
        source_only, source_root = lambda_file_system(zips, Path(scratch) / "source", bytecode=False)
        first_answer = FIRST_ANSWER.format(bench=str(REPO / "bench"), event=str(EVENT))
        statements = {
            "boto3": ("import boto3", shipped, task_root),
            "handler": ("import handlers.api.handler", shipped, task_root),
            "handler_source_only": ("import handlers.api.handler", source_only, source_root),
            "libraries": (LIBRARIES, shipped, task_root),
            "libraries_event_handler": (LIBRARIES + EVENT_HANDLER, shipped, task_root),
            "first_answer": (first_answer, {**shipped, "POWERTOOLS_TRACE_DISABLED": "true"}, task_root),
        }
        samples: dict[str, list[float]] = {name: [] for name in statements}
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits every variant alike
            for name, (statement, env, cwd) in statements.items():
                samples[name].append(timed_in_fresh_interpreter(statement, env, cwd))
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def warm(requests: int) -> dict[str, float]:
    os.environ.update(ENV)
    sys.path.insert(0, str(REPO))
    from handlers.api import endpoint_client  # noqa: PLC0415 - after the environment is set
    from handlers.api import handler as predict_api  # noqa: PLC0415 - after the environment is set

    endpoint_client.runtime_client.set(FakeEndpoint())  # type: ignore[arg-type]
    event = json.loads(EVENT.read_text())
    context = FakeContext()
    durations: list[float] = []
    # Logs and EMF metrics go to stdout in Lambda; here they go nowhere, but are still produced.
    with Path(os.devnull).open("w") as sink, contextlib.redirect_stdout(sink):
        predict_api.logger.registered_handler.setStream(sink)  # type: ignore[attr-defined]
        for index in range(requests + 300):
            started = time.perf_counter()
            answer = predict_api.lambda_handler(event, context)
            if index >= 300:  # the first ones build the schema, models and caches
                durations.append(time.perf_counter() - started)
            assert answer["statusCode"] == 200, answer
    durations.sort()
    return {
        q: durations[int(len(durations) * p)] * 1000 for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out_dir:
        zips = build_zips(Path(out_dir))
        cold_ms = cold(zips, args.repeats)
    warm_ms = warm(args.requests)
    boto3_ms = cold_ms["boto3"]
    rows = [
        ("import boto3 (baseline)", f"{boto3_ms:.0f} ms", ""),
        ("import handlers.api.handler, shipped artifacts", f"{cold_ms['handler']:.0f} ms", ""),
        ("  ratio handler / boto3", f"{cold_ms['handler'] / boto3_ms:.2f}x", "target <= 1.5x"),
        ("  same artifacts without bytecode", f"{cold_ms['handler_source_only'] / boto3_ms:.2f}x", ""),
        ("  its libraries alone (no code of ours)", f"{cold_ms['libraries'] / boto3_ms:.2f}x", "the floor"),
        (
            "  those + Powertools' event handler",
            f"{cold_ms['libraries_event_handler'] / boto3_ms:.2f}x",
            "routing with it, as before",
        ),
        ("cold start to first answer", f"{cold_ms['first_answer']:.0f} ms", "import + first request"),
        ("warm handler overhead p50", f"{warm_ms['p50']:.3f} ms", "target <= 0.5 ms"),
        ("warm handler overhead p90 / p99", f"{warm_ms['p90']:.3f} / {warm_ms['p99']:.3f} ms", ""),
        ("handlers.zip", f"{zips['handlers'].zipped_bytes / 1024:.1f} KiB", "target <= 5 MB"),
        ("powertools layer (local copy)", f"{zips['layer'].zipped_bytes / 1024 / 1024:.1f} MiB", ""),
    ]
    python = sys.version.split()[0]
    print(f"{args.repeats} fresh interpreters per import, {args.requests} warm requests, Python {python}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")


if __name__ == "__main__":
    main()
