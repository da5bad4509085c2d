"""SageMaker hosting on this machine: the deployer's CreateEndpoint/UpdateEndpoint end with a real
model server answering for the endpoint, switched blue/green, and an endpoint status that tells the
truth meanwhile (docs/local-platform.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator import processes
from emulator.isolation import without_aws
from emulator.ports import free_port
from infra.stack_config import project_root

logger = logging.getLogger(__name__)

CREATING, UPDATING, IN_SERVICE, FAILED = "Creating", "Updating", "InService", "Failed"
READY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 60.0  # the longest an old server keeps answering requests that picked it
STOP_TIMEOUT_S = 15.0
PROJECT_ROOT = project_root()


class ContainerStartError(RuntimeError):
    """The model server for an endpoint did not become healthy."""


# --- moto: the hosting API as SageMaker reports it -----------------------------------------------------


def extend_moto() -> Callable[[], None]:
    """Patch moto's SageMaker responses in this process (see the module docstring); returns the
    function that undoes it (the emulator never does; tests sharing a process with other moto
    users must)."""
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415 - moto is local-only

    if getattr(SageMakerResponse, "_mlp_hosting", False):
        return lambda: None
    original_create = SageMakerResponse.create_endpoint

    def create_endpoint(self: Any) -> Any:
        result = original_create(self)
        endpoint = self.sagemaker_backend.endpoints[self._get_param("EndpointName")]
        endpoint.endpoint_status = CREATING
        return result

    def update_endpoint(self: Any) -> Any:
        from moto.sagemaker.exceptions import ValidationError  # noqa: PLC0415
        from moto.sagemaker.responses import ActionResult  # noqa: PLC0415

        backend = self.sagemaker_backend
        name, config = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            raise ValidationError(message=f"Could not find endpoint '{name}'.")
        if config not in backend.endpoint_configs:
            raise ValidationError(message=f"Could not find endpoint configuration '{config}'.")
        if endpoint.endpoint_status != IN_SERVICE:
            raise ValidationError(
                message=f"Cannot update in-progress endpoint '{endpoint.arn}' ({endpoint.endpoint_status})."
            )
        endpoint.pending_deployment_summary = {"EndpointConfigName": config, "StartTime": _now()}
        endpoint.endpoint_status = UPDATING
        endpoint.failure_reason = None
        endpoint.last_modified_time = _now()
        return ActionResult({"EndpointArn": endpoint.arn})

    from moto.sagemaker.models import SageMakerModelBackend  # noqa: PLC0415

    original_update_package = SageMakerModelBackend.update_model_package

    def update_model_package(self: Any, model_package_arn: str, model_approval_status: str | None,
                             approval_description: str | None,
                             customer_metadata_properties: dict[str, str] | None,
                             *args: Any, **kwargs: Any) -> str:  # fmt: skip
        # SageMaker changes only what the request names; moto resets the rest to None.
        name = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
        current = self.model_packages.get(name)
        if current is not None:
            model_approval_status = model_approval_status or current.model_approval_status
            approval_description = approval_description or current.approval_description
            if customer_metadata_properties is None:
                customer_metadata_properties = current.customer_metadata_properties
        return original_update_package(
            self, model_package_arn, model_approval_status, approval_description,
            customer_metadata_properties, *args, **kwargs,
        )  # fmt: skip

    original_add_tags = SageMakerModelBackend.add_tags

    def add_tags(self: Any, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        # SageMaker replaces the value of a key it already has; moto appends a second one.
        resource = self._get_resource_from_arn(arn)
        added = {tag["Key"] for tag in tags}
        resource.tags = [tag for tag in resource.tags if tag["Key"] not in added]
        return list(original_add_tags(self, arn, tags))

    SageMakerModelBackend.add_tags = add_tags  # type: ignore[method-assign]
    SageMakerResponse.create_endpoint = create_endpoint  # type: ignore[method-assign]
    SageMakerResponse.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    SageMakerModelBackend.update_model_package = update_model_package  # type: ignore[method-assign]
    SageMakerResponse._mlp_hosting = True  # type: ignore[attr-defined]

    def undo() -> None:
        SageMakerResponse.create_endpoint = original_create  # type: ignore[method-assign]
        SageMakerModelBackend.update_model_package = original_update_package  # type: ignore[method-assign]
        SageMakerModelBackend.add_tags = original_add_tags  # type: ignore[method-assign]
        del SageMakerResponse.update_endpoint  # type: ignore[attr-defined]
        del SageMakerResponse._mlp_hosting  # type: ignore[attr-defined]

    return undo


def sagemaker_backend(account_id: str, region: str) -> Any:
    """moto's in-process SageMaker backend of ``account_id`` / ``region``."""
    from moto.sagemaker.models import sagemaker_backends  # noqa: PLC0415

    return sagemaker_backends[account_id][region]


def _now() -> datetime:
    return datetime.now(UTC)


# --- model server processes ----------------------------------------------------------------------------


@dataclass
class Container:
    """One model server process serving one model."""

    model_name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """SIGTERM (the server finishes its in-flight requests), then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(STOP_TIMEOUT_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_container(
    model_name: str, model_dir: Path, environment: dict[str, str], log_dir: Path
) -> Container:
    """Start ``handlers.serving.server`` on ``model_dir`` and wait until ``/ping`` answers 200."""
    port = free_port()
    log_path = log_dir / f"model-server-{model_name}-{port}.log"
    # A model server calls no AWS: it gets no credentials, not even the emulator's placeholders.
    env = {**without_aws(os.environ), **environment, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("SM_MODEL_DIR", None)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "handlers.serving.server", "--model-dir", str(model_dir)]
            + ["--port", str(port), "--log-level", "warning"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its workers
        )
    processes.record(process.pid, "model-server")
    container = Container(model_name, f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_healthy(container)
    except ContainerStartError:
        container.stop()
        raise
    return container


def _wait_healthy(container: Container) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if container.process.poll() is not None:
            raise ContainerStartError(
                f"the model server for {container.model_name} exited with {container.process.returncode}: "
                + _log_tail(container.log_path)
            )
        try:
            with urllib.request.urlopen(f"{container.url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise ContainerStartError(f"the model server for {container.model_name} was not healthy in time")


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the watcher -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """What the router needs to know about a newly served endpoint config."""

    endpoint: str
    url: str
    variant: str
    config_name: str
    model_name: str
    capture_percent: int = 0  # the config's DataCaptureConfig (0: no capture)
    capture_uri: str | None = None


class LocalHosting:
    """Serves every emulated endpoint that is ``Creating`` or ``Updating`` (see module docstring).

    Parameters: ``backend`` returns moto's SageMaker backend; ``download`` copies an ``s3://``
    object to a local path; ``switch_route(served)`` points the runtime gateway at a new server;
    ``wait_drained(url, timeout)`` returns once no request is in flight on an old server (the
    gateway's count); ``work_dir`` holds extracted models and server logs.
    """

    def __init__(
        self,
        backend: Callable[[], Any],
        download: Callable[[str, Path], None],
        switch_route: Callable[[ServedModel], None],
        work_dir: Path,
        *,
        poll_s: float = 0.2,
        wait_drained: Callable[[str, float], bool] = lambda url, timeout: True,
    ) -> None:
        self._backend = backend
        self._download = download
        self._switch_route = switch_route
        self._work_dir = work_dir
        self._poll_s = poll_s
        self._wait_drained = wait_drained
        self._containers: dict[str, Container] = {}
        self._served: dict[str, tuple[ServedModel, Path, dict[str, str]]] = {}  # how to start it again
        self._retired: list[Container] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="local-hosting", daemon=True)

    def start(self) -> None:
        (self._work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and stop every model server."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(READY_TIMEOUT_S)
        for container in [*self._containers.values(), *self._retired]:
            container.stop()

    def containers(self) -> dict[str, str]:
        """Endpoint name -> URL of the model server serving it."""
        return {name: container.url for name, container in self._containers.items()}

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            for endpoint in list(self._backend().endpoints.values()):
                try:
                    if endpoint.endpoint_status in (CREATING, UPDATING):
                        self._serve(endpoint)
                    elif endpoint.endpoint_status == IN_SERVICE:
                        self._replace_if_dead(endpoint)
                except Exception:  # a bug here must not stop the other endpoints
                    logger.exception("serving endpoint %s failed", endpoint.endpoint_name)
                    self._finish(endpoint, None, "local hosting failed; see the emulator log")

    def _replace_if_dead(self, endpoint: Any) -> None:
        """A model server that died is replaced, as SageMaker replaces a failed instance; if its
        replacement cannot start, the endpoint is ``Failed`` with the reason."""
        container = self._containers.get(endpoint.endpoint_name)
        if container is None or container.process.poll() is None:
            return
        served, model_dir, environment = self._served[endpoint.endpoint_name]
        logger.warning(
            "endpoint %s: the model server %s exited with %s; starting a new one",
            endpoint.endpoint_name, container.url, container.process.returncode,
        )  # fmt: skip
        try:
            replacement = start_container(served.model_name, model_dir, environment, self._work_dir / "logs")
        except ContainerStartError as exc:
            del self._containers[endpoint.endpoint_name]
            endpoint.endpoint_status = FAILED
            endpoint.failure_reason = f"the model server died and could not be replaced: {exc}"
            endpoint.last_modified_time = _now()
            return
        replaced = ServedModel(
            served.endpoint, replacement.url, served.variant, served.config_name, served.model_name,
            capture_percent=served.capture_percent, capture_uri=served.capture_uri,
        )  # fmt: skip
        self._switch_route(replaced)
        self._containers[endpoint.endpoint_name] = replacement
        self._served[endpoint.endpoint_name] = (replaced, model_dir, environment)

    def _serve(self, endpoint: Any) -> None:
        backend = self._backend()
        pending = getattr(endpoint, "pending_deployment_summary", None) or {}
        config_name = pending.get("EndpointConfigName") or endpoint.endpoint_config_name
        config = backend.endpoint_configs[config_name]
        variant = config.production_variants[0]
        model = backend._models[variant["ModelName"]]  # moto keeps models private
        container_spec = model.primary_container or (model.containers or [{}])[0]
        logger.info("endpoint %s: serving %s (%s)", endpoint.endpoint_name, config_name, model.model_name)
        environment = {str(k): str(v) for k, v in (container_spec.get("Environment") or {}).items()}
        try:
            model_dir = self._model_dir(model.model_name, str(container_spec["ModelDataUrl"]))
            container = start_container(model.model_name, model_dir, environment, self._work_dir / "logs")
        except (ContainerStartError, OSError, tarfile.TarError, KeyError) as exc:
            logger.warning("endpoint %s: %s", endpoint.endpoint_name, exc)
            self._finish(endpoint, None, f"model server did not start: {exc}")
            return
        capture = config.data_capture_config or {}
        capturing = capture.get("EnableCapture", True) and bool(capture.get("DestinationS3Uri"))
        served = ServedModel(
            endpoint.endpoint_name,
            container.url,
            str(variant["VariantName"]),
            config_name,
            model.model_name,
            capture_percent=int(capture.get("InitialSamplingPercentage", 100)) if capturing else 0,
            capture_uri=capture.get("DestinationS3Uri") if capturing else None,
        )
        self._switch_route(served)
        previous = self._containers.get(endpoint.endpoint_name)
        self._containers[endpoint.endpoint_name] = container
        self._served[endpoint.endpoint_name] = (served, model_dir, environment)
        if previous is not None:
            self._retire(previous)
        self._finish(endpoint, config, None)

    def _finish(self, endpoint: Any, config: Any | None, failure: str | None) -> None:
        """Record the outcome the way SageMaker reports it."""
        updating = endpoint.endpoint_status == UPDATING
        endpoint.pending_deployment_summary = None
        endpoint.last_modified_time = _now()
        endpoint.failure_reason = failure
        if config is not None:
            endpoint.endpoint_config_name = config.endpoint_config_name
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
            endpoint.data_capture_config = config.data_capture_config
            endpoint.endpoint_status = IN_SERVICE
        else:
            endpoint.endpoint_status = IN_SERVICE if updating else FAILED  # an update rolls back

    def _retire(self, container: Container) -> None:
        """Stop the old server once the requests routed to it before the switch have finished."""
        self._retired.append(container)

        def drain_then_stop() -> None:
            if not self._wait_drained(container.url, DRAIN_TIMEOUT_S):
                logger.warning(
                    "%s still had requests after %.0f s; stopping it", container.url, DRAIN_TIMEOUT_S
                )
            container.stop()

        threading.Thread(target=drain_then_stop, name=f"drain-{container.model_name}", daemon=True).start()

    def _model_dir(self, model_name: str, model_data_url: str) -> Path:
        target = self._work_dir / "models" / model_name
        if (target / ".extracted").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = target.parent / f"{model_name}.tar.gz"
        self._download(model_data_url, archive)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
        archive.unlink()
        (target / ".extracted").touch()
        return target
