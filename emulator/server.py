"""The local platform's "AWS": one background process started by ``mlctl local up``.

``python -m emulator.server STATE_DIR`` hosts moto's server with SageMaker hosting, the SageMaker
Runtime with data capture, API Gateway in front of the API Lambda, and EventBridge delivering
events to the stack's Lambda functions (the deployer), until SIGTERM (docs/local-platform.md).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.isolation import EMULATOR_CREDENTIALS, write_private
from handlers.common.s3_uri import S3Uri
from infra.stack_config import ApiAuth

if TYPE_CHECKING:
    from emulator.hosting import ServedEndpoint
    from emulator.runtime import Route

CONFIG_FILE = "emulator.json"
READY_FILE = "ready.json"
LAMBDA_LOGS = Path("logs") / "lambda"  # under the state folder: invocations.jsonl, <function>.log
CAPTURE_FLUSH_S = 1.0
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's account

logger = logging.getLogger("emulator.server")


@dataclass(frozen=True)
class EmulatorConfig:
    """What ``mlctl local up`` hands the emulator (``emulator.json``).

    ``api_auth`` is the planned API's authorization: with ``ApiAuth.IAM`` requests are SigV4-signed
    and ``api_key`` is None.
    """

    region: str
    moto_port: int
    runtime_port: int
    api_port: int
    api_key: str | None
    capture_uri: str | None = None
    capture_percent: int = 100
    api_env: dict[str, str] = field(default_factory=dict)
    account_id: str = DEFAULT_ACCOUNT_ID
    api_auth: ApiAuth = ApiAuth.API_KEY

    @classmethod
    def read(cls, state_dir: Path) -> EmulatorConfig:
        document = json.loads((state_dir / CONFIG_FILE).read_text())
        return cls(**{**document, "api_auth": ApiAuth(document.get("api_auth", ApiAuth.API_KEY))})

    def write(self, state_dir: Path) -> None:
        write_private(state_dir / CONFIG_FILE, json.dumps(self.__dict__, indent=2))  # holds the API key


def run(state_dir: Path) -> int:
    """Start everything, write ``ready.json``, wait for a stop signal, stop everything."""
    config = EmulatorConfig.read(state_dir)
    aws_url = f"http://127.0.0.1:{config.moto_port}"
    _aws_environment(config, aws_url)

    from emulator import (  # noqa: PLC0415 - moto: only this process needs it
        autoscaling,
        events,
        hosting,
        lambda_invoke,
        lambdas,
        pipeline_executions,
    )
    from emulator.aws_endpoint import EmulatedAws  # noqa: PLC0415
    from emulator.clients import emulator_client  # noqa: PLC0415
    from emulator.training import describe as training_outcomes  # noqa: PLC0415

    functions = lambdas.LocalLambdaRuntime(
        lambda service: emulator_client(service, config.region, aws_url),
        region=config.region,
        aws_url=aws_url,
        log_dir=lambda_log_dir(state_dir),
    )
    bus = events.LocalEventBus(
        lambda: events.events_backend(config.account_id, config.region), functions.invoke_async
    )
    hosting.extend_moto(bus.put)
    events.extend_moto(bus)
    autoscaling.extend_moto()
    lambda_invoke.extend_moto(functions)  # Invoke runs the handler locally
    training_outcomes.extend_moto()  # DescribeTrainingJob: status and final metrics
    pipelines = pipeline_executions.PipelineRunner(
        lambda service: emulator_client(service, config.region, aws_url),
        state_dir / "pipelines",
    )
    pipeline_executions.extend_moto(pipelines.start)
    aws = EmulatedAws("127.0.0.1", config.moto_port)  # moto, with SageMaker Runtime's paths served for real
    aws.start()
    stopping = threading.Event()
    services = _Services(config, aws_url, state_dir, bus.put)
    try:
        services.start()
        aws.dispatch.runtime_url = services.runtime_url
        (state_dir / READY_FILE).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "aws_endpoint_url": aws_url,
                    "runtime_url": services.runtime_url,
                    "api_url": services.api_url,
                },
                indent=2,
            )
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stopping.set())
        logger.info("local platform ready: AWS %s, API %s", aws_url, services.api_url)
        stopping.wait()
    finally:
        functions.stop()  # first: running handlers call the services below
        services.stop()
        aws.stop()
        (state_dir / READY_FILE).unlink(missing_ok=True)
    return 0


def lambda_log_dir(state_dir: Path) -> Path:
    """Where the local Lambda runtime writes its invocation records and the functions' logs."""
    return state_dir / LAMBDA_LOGS


def _aws_environment(config: EmulatorConfig, aws_url: str) -> None:
    """Every AWS client in this process (the Lambda handler's included) talks to the emulator."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", EMULATOR_CREDENTIALS.access_key_id)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", EMULATOR_CREDENTIALS.secret_access_key)
    os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"] = config.region
    os.environ["AWS_ENDPOINT_URL"] = aws_url


class _Services:
    """The gateways, hosting and capture around the moto server; ``emit`` puts an event on the
    local EventBridge bus (hosting's endpoint state changes)."""

    def __init__(
        self, config: EmulatorConfig, aws_url: str, state_dir: Path, emit: Callable[[dict[str, Any]], Any]
    ) -> None:
        self.config = config
        self.aws_url = aws_url
        self.state_dir = state_dir
        self.emit = emit
        self.runtime_url = ""
        self.api_url = ""
        self._stop_flush = threading.Event()
        self._parts: list[Any] = []
        self.capture: Any = None
        self.hosting: Any = None

    def start(self) -> None:
        import boto3  # noqa: PLC0415

        from emulator import hosting  # noqa: PLC0415
        from emulator.api_gateway import LocalApiGateway  # noqa: PLC0415
        from emulator.runtime import CaptureWriter, EndpointRouter, RuntimeGateway  # noqa: PLC0415

        config = self.config
        s3 = boto3.client("s3", region_name=config.region, endpoint_url=self.aws_url)
        router = EndpointRouter()
        self.capture = CaptureWriter(s3, config.capture_uri) if config.capture_uri else None
        runtime = RuntimeGateway(router, self.capture, host="127.0.0.1", port=config.runtime_port)
        runtime.start()
        self._parts.append(runtime)
        self.runtime_url = runtime.url

        def switch(served: hosting.ServedEndpoint) -> None:
            router.set_routes(served.endpoint, routes_of(served))  # every variant at once: blue/green

        def download(uri: str, target: Path) -> None:
            source = S3Uri.parse(uri)
            s3.download_file(source.bucket, source.key, str(target))

        self.hosting = hosting.LocalHosting(
            lambda: hosting.sagemaker_backend(config.account_id, config.region),
            download,
            switch,
            self.state_dir / "hosting",
            wait_drained=router.wait_drained,
            emit=self.emit,
        )
        self.hosting.start()
        os.environ.update(config.api_env)
        os.environ["ENDPOINT_URL_SAGEMAKER_RUNTIME"] = runtime.url
        from handlers.api import handler as predict_api  # noqa: PLC0415 - after its environment is set

        api = LocalApiGateway(
            predict_api.lambda_handler,
            config.api_key,
            host="127.0.0.1",
            port=config.api_port,
            auth=config.api_auth,
            region=config.region,
        )
        api.start()
        self._parts.append(api)
        self.api_url = api.url
        if self.capture is not None:
            threading.Thread(target=self._flush_capture, name="capture-flush", daemon=True).start()

    def _flush_capture(self) -> None:
        while not self._stop_flush.wait(CAPTURE_FLUSH_S):
            self.capture.flush()

    def stop(self) -> None:
        self._stop_flush.set()
        for part in reversed(self._parts):
            part.stop()
        if self.hosting is not None:
            self.hosting.stop()
        if self.capture is not None:
            self.capture.close()


def routes_of(served: ServedEndpoint) -> list[Route]:
    """The runtime gateway's routes for an endpoint served by local hosting: one per variant."""
    from emulator.runtime import Route  # noqa: PLC0415

    return [
        Route(
            container_url=variant.url,
            variant_name=variant.variant,
            config_name=served.config_name,
            model_version=variant.model_name,
            capture_percent=served.capture_percent,
            capture_uri=served.capture_uri,
            weight=variant.weight,
        )
        for variant in served.variants
    ]


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(sys.stderr)],
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m emulator.server STATE_DIR", file=sys.stderr)
        return 2
    state_dir = Path(args[0])
    _configure_logging()
    return run(state_dir)


if __name__ == "__main__":
    sys.exit(main())
