"""Benchmark of the prediction API Lambda (not a test): cold import, warm overhead, zip size.

    .venv/bin/python bench/lambda_api.py [--repeats 7] [--requests 3000]

- cold import: ``import handlers.predict_api`` vs ``import boto3`` alone, each timed inside a fresh
  interpreter with the environment the Lambda runtime sets (tracing on), ``--repeats`` times,
  median ratio (target <= 1.5x); also outside Lambda, where the X-Ray SDK (loaded by the
  module-level ``Tracer()``) builds an X-Ray client at import, and cold start to the first answer.
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
import statistics
import subprocess
import sys
import tempfile
import time
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
# which it does everywhere else. So the cold import is measured as Lambda runs it, and also outside.
LAMBDA_RUNTIME_ENV = {
    **{k: v for k, v in ENV.items() if k != "POWERTOOLS_TRACE_DISABLED"},
    "LAMBDA_TASK_ROOT": str(REPO),
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}
FIRST_ANSWER = """
import json, time
t = time.perf_counter()
from handlers import endpoint_client, predict_api
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


def timed_in_fresh_interpreter(statement: str, env: dict[str, str]) -> float:
    """Seconds ``statement`` takes in a new interpreter (interpreter start-up excluded)."""
    code = (
        "import sys, time\nt0 = time.perf_counter()\n"
        + statement.replace("t = time.perf_counter()\n", "")
        + "\nprint(time.perf_counter() - t0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, env=env
    )
    return float(result.stdout.strip().splitlines()[-1])


def cold(repeats: int) -> dict[str, float]:
    statements = {
        "boto3": ("import boto3", LAMBDA_RUNTIME_ENV),
        "handler": ("import handlers.predict_api", LAMBDA_RUNTIME_ENV),
        "handler_outside_lambda": ("import handlers.predict_api", ENV),
        "xray": ("import botocore.session, aws_xray_sdk.core", ENV),
        "botocore": ("import botocore.session", ENV),
        "first_answer": (FIRST_ANSWER.format(bench=str(REPO / "bench"), event=str(EVENT)), ENV),
    }
    samples: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits every variant alike
        for name, (statement, env) in statements.items():
            samples[name].append(timed_in_fresh_interpreter(statement, env))
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def warm(requests: int) -> dict[str, float]:
    os.environ.update(ENV)
    sys.path.insert(0, str(REPO))
    from handlers import endpoint_client, predict_api  # noqa: PLC0415 - after the environment is set

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


def sizes() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from handlers import packaging  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        handlers_zip = packaging.build_handlers_zip(Path(scratch))
        layer_zip = packaging.build_layer_zip(Path(scratch), offline=True)
    return {"handlers": handlers_zip, "layer": layer_zip}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    cold_ms = cold(args.repeats)
    warm_ms = warm(args.requests)
    zips = sizes()
    ratio = cold_ms["handler"] / cold_ms["boto3"]
    outside = cold_ms["handler_outside_lambda"] / cold_ms["boto3"]
    rows = [
        ("import boto3 (median, Lambda environment)", f"{cold_ms['boto3']:.0f} ms", ""),
        ("import handlers.predict_api (median, Lambda environment)", f"{cold_ms['handler']:.0f} ms", ""),
        ("  ratio handler / boto3 in Lambda", f"{ratio:.2f}x", "target <= 1.5x"),
        ("import handlers.predict_api outside Lambda", f"{cold_ms['handler_outside_lambda']:.0f} ms", ""),
        ("  ratio outside Lambda", f"{outside:.2f}x", "X-Ray SDK builds an X-Ray client there"),
        ("  X-Ray SDK outside Lambda", f"{cold_ms['xray'] - cold_ms['botocore']:.0f} ms", ""),
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
