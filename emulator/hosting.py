"""SageMaker hosting on this machine: the deployer's CreateEndpoint/UpdateEndpoint end with a real
model server answering for the endpoint, switched blue/green, and an endpoint status that tells the
truth meanwhile; each status change, and each model package approval, is SageMaker's EventBridge
event (docs/local-platform.md).
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
from emulator.sagemaker_events import endpoint_state_change, model_package_state_change
from infra.stack_config import project_root

logger = logging.getLogger(__name__)

CREATING, UPDATING, IN_SERVICE, FAILED = "Creating", "Updating", "InService", "Failed"
Emit = Callable[[dict[str, Any]], Any]  # puts an EventBridge event on the local bus
READY_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 60.0  # the longest an old server keeps answering requests that picked it
STOP_TIMEOUT_S = 15.0
PROJECT_ROOT = project_root()


class ContainerStartError(RuntimeError):
    """The model server for an endpoint did not become healthy."""


# --- moto: the hosting API as SageMaker reports it -----------------------------------------------------


def extend_moto(emit: Emit | None = None) -> Callable[[], None]:
    """Patch moto's SageMaker responses in this process (see the module docstring); returns the
    function that undoes it (the emulator never does; tests sharing a process with other moto
    users must). ``emit`` gets the events SageMaker would send: a version created or its approval
    changed, an endpoint now ``Creating`` or ``Updating``."""
    emit = emit or _no_events
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415 - moto is local-only

    if getattr(SageMakerResponse, "_mlp_hosting", False):
        return lambda: None
    original_create = SageMakerResponse.create_endpoint

    def create_endpoint(self: Any) -> Any:
        result = original_create(self)
        endpoint = self.sagemaker_backend.endpoints[self._get_param("EndpointName")]
        endpoint.endpoint_status = CREATING
        emit(endpoint_state_change(endpoint))
        return result

    undo_updates = _extend_endpoint_updates(emit)
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
        before = current.model_approval_status if current is not None else None
        arn = original_update_package(
            self, model_package_arn, model_approval_status, approval_description,
            customer_metadata_properties, *args, **kwargs,
        )  # fmt: skip
        package = self.model_packages[name]
        if package.model_approval_status != before:  # SageMaker's event: the approval changed
            emit(model_package_state_change(package))
        return str(arn)

    original_create_package = SageMakerModelBackend.create_model_package

    def create_model_package(self: Any, *args: Any, **kwargs: Any) -> str:
        arn = str(original_create_package(self, *args, **kwargs))
        emit(model_package_state_change(self.model_packages[arn]))
        return arn

    original_add_tags = SageMakerModelBackend.add_tags

    def add_tags(self: Any, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        # SageMaker replaces the value of a key it already has; moto appends a second one.
        resource = self._get_resource_from_arn(arn)
        added = {tag["Key"] for tag in tags}
        resource.tags = [tag for tag in resource.tags if tag["Key"] not in added]
        return list(original_add_tags(self, arn, tags))

    SageMakerModelBackend.add_tags = add_tags  # type: ignore[method-assign]
    SageMakerResponse.create_endpoint = create_endpoint  # type: ignore[method-assign]
    SageMakerModelBackend.update_model_package = update_model_package  # type: ignore[method-assign]
    SageMakerModelBackend.create_model_package = create_model_package  # type: ignore[method-assign]
    SageMakerResponse._mlp_hosting = True  # type: ignore[attr-defined]

    def undo() -> None:
        SageMakerResponse.create_endpoint = original_create  # type: ignore[method-assign]
        SageMakerModelBackend.update_model_package = original_update_package  # type: ignore[method-assign]
        SageMakerModelBackend.create_model_package = original_create_package  # type: ignore[method-assign]
        SageMakerModelBackend.add_tags = original_add_tags  # type: ignore[method-assign]
        undo_updates()
        del SageMakerResponse._mlp_hosting  # type: ignore[attr-defined]

    return undo


def _extend_endpoint_updates(emit: Emit) -> Callable[[], None]:
    """UpdateEndpoint and UpdateEndpointWeightsAndCapacities as SageMaker runs them (``emit`` gets
    the endpoint's ``Updating`` event), and variant weights as it reports them; returns the undo."""
    from moto.sagemaker.responses import SageMakerResponse  # noqa: PLC0415

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
        _refuse_unless_in_service(endpoint)
        endpoint.pending_deployment_summary = {"EndpointConfigName": config, "StartTime": _now()}
        endpoint.endpoint_status = UPDATING
        endpoint.failure_reason = None
        endpoint.last_modified_time = _now()
        emit(endpoint_state_change(endpoint))
        return ActionResult({"EndpointArn": endpoint.arn})

    original_weights = SageMakerResponse.update_endpoint_weights_and_capacities

    def update_endpoint_weights_and_capacities(self: Any) -> Any:
        # SageMaker refuses it unless InService, changes only what the request names, and stays
        # Updating until traffic follows (LocalHosting moves the routes); moto sets what the
        # request leaves out to None and is InService at once.
        endpoint = self.sagemaker_backend.endpoints.get(self._get_param("EndpointName"))
        if endpoint is None:
            return original_weights(self)  # moto's ValidationError
        _refuse_unless_in_service(endpoint)
        before = [dict(variant) for variant in endpoint.production_variants]
        result = original_weights(self)
        for variant, kept in zip(endpoint.production_variants, before, strict=True):
            variant.update({key: value for key, value in kept.items() if variant.get(key) is None})
        endpoint.endpoint_status = UPDATING
        endpoint.last_modified_time = _now()
        emit(endpoint_state_change(endpoint))
        return result

    from moto.sagemaker.models import FakeEndpoint  # noqa: PLC0415

    original_variants = FakeEndpoint._process_production_variants

    def process_production_variants(self: Any, production_variants: list[dict[str, Any]]) -> list[Any]:
        # SageMaker reports every variant's weight: 0 too (moto leaves it out), 1.0 when unset.
        summaries = list(original_variants(self, production_variants))
        for summary, variant in zip(summaries, production_variants, strict=True):
            summary["CurrentWeight"] = summary["DesiredWeight"] = _initial_weight(variant)
        return summaries

    SageMakerResponse.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    SageMakerResponse.update_endpoint_weights_and_capacities = update_endpoint_weights_and_capacities  # type: ignore[method-assign]
    FakeEndpoint._process_production_variants = process_production_variants  # type: ignore[method-assign]

    def undo() -> None:
        SageMakerResponse.update_endpoint_weights_and_capacities = original_weights  # type: ignore[method-assign]
        FakeEndpoint._process_production_variants = original_variants  # type: ignore[method-assign]
        del SageMakerResponse.update_endpoint  # type: ignore[attr-defined]

    return undo


def _refuse_unless_in_service(endpoint: Any) -> None:
    """SageMaker changes an endpoint only while it is ``InService``."""
    from moto.sagemaker.exceptions import ValidationError  # noqa: PLC0415

    if endpoint.endpoint_status != IN_SERVICE:
        raise ValidationError(
            message=f"Cannot update in-progress endpoint '{endpoint.arn}' ({endpoint.endpoint_status})."
        )


def _no_events(event: dict[str, Any]) -> None:
    """Where events go when nothing listens (tests of hosting alone)."""


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
class ServedVariant:
    """One production variant as the router needs it: its model server and its share of traffic."""

    variant: str
    model_name: str
    url: str
    weight: float


@dataclass(frozen=True)
class ServedEndpoint:
    """What the router needs to know about an endpoint's served config: all its variants at once."""

    endpoint: str
    config_name: str
    variants: tuple[ServedVariant, ...]
    capture_percent: int = 0  # the config's DataCaptureConfig (0: no capture)
    capture_uri: str | None = None


@dataclass
class _VariantServer:
    """A production variant's running model server, and what starts it again."""

    variant: str
    model_name: str
    model_dir: Path
    environment: dict[str, str]
    container: Container
    weight: float


@dataclass
class _Deployment:
    """The endpoint config an endpoint is served with: one model server per production variant."""

    config_name: str
    servers: list[_VariantServer]
    capture_percent: int
    capture_uri: str | None

    def served(self, endpoint: str) -> ServedEndpoint:
        variants = tuple(
            ServedVariant(server.variant, server.model_name, server.container.url, server.weight)
            for server in self.servers
        )
        return ServedEndpoint(endpoint, self.config_name, variants, self.capture_percent, self.capture_uri)


class LocalHosting:
    """Serves every emulated endpoint that is ``Creating`` or ``Updating`` (see module docstring).

    Parameters: ``backend`` returns moto's SageMaker backend; ``download`` copies an ``s3://``
    object to a local path; ``switch_route(served)`` points the runtime gateway at an endpoint's
    servers (all its variants, with their weights); ``wait_drained(url, timeout)`` returns once
    no request is in flight on an old server (the gateway's count); ``work_dir`` holds extracted
    models and server logs; ``emit`` gets the endpoint's state change event each time an
    endpoint becomes ``InService`` or ``Failed``.
    """

    def __init__(
        self,
        backend: Callable[[], Any],
        download: Callable[[str, Path], None],
        switch_route: Callable[[ServedEndpoint], None],
        work_dir: Path,
        *,
        poll_s: float = 0.2,
        wait_drained: Callable[[str, float], bool] = lambda url, timeout: True,
        emit: Emit | None = None,
    ) -> None:
        self._backend = backend
        self._emit = emit or _no_events
        self._download = download
        self._switch_route = switch_route
        self._work_dir = work_dir
        self._poll_s = poll_s
        self._wait_drained = wait_drained
        self._deployments: dict[str, _Deployment] = {}
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
        serving = [
            server.container for deployment in self._deployments.values() for server in deployment.servers
        ]
        for container in [*serving, *self._retired]:
            container.stop()

    def containers(self) -> dict[str, dict[str, str]]:
        """Endpoint name -> variant name -> URL of the model server serving it."""
        return {
            name: {server.variant: server.container.url for server in deployment.servers}
            for name, deployment in self._deployments.items()
        }

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            for endpoint in list(self._backend().endpoints.values()):
                try:
                    if self._is_weight_update(endpoint):
                        self._follow_weights(endpoint)
                    elif endpoint.endpoint_status in (CREATING, UPDATING):
                        self._serve(endpoint)
                    elif endpoint.endpoint_status == IN_SERVICE:
                        self._replace_dead_servers(endpoint)
                except Exception:  # a bug here must not stop the other endpoints
                    logger.exception("serving endpoint %s failed", endpoint.endpoint_name)
                    self._finish(endpoint, None, "local hosting failed; see the emulator log")

    def _is_weight_update(self, endpoint: Any) -> bool:
        """``Updating`` with no new config: UpdateEndpointWeightsAndCapacities on a served endpoint."""
        return (
            endpoint.endpoint_status == UPDATING
            and not getattr(endpoint, "pending_deployment_summary", None)
            and endpoint.endpoint_name in self._deployments
        )

    def _follow_weights(self, endpoint: Any) -> None:
        """The routes take the variants' new weights (same servers: nothing to drain), then the
        endpoint is ``InService`` again on the config it had."""
        deployment = self._deployments[endpoint.endpoint_name]
        weights = {str(v["VariantName"]): _current_weight(v) for v in endpoint.production_variants}
        for server in deployment.servers:
            server.weight = weights.get(server.variant, server.weight)
        self._switch_route(deployment.served(endpoint.endpoint_name))
        self._finish(endpoint, None, None)  # Updating with no config and no failure: InService, as it was

    def _replace_dead_servers(self, endpoint: Any) -> None:
        """A variant's model server that died is replaced, as SageMaker replaces a failed instance;
        if a replacement cannot start, the endpoint is ``Failed`` with the reason and its other
        servers are stopped."""
        deployment = self._deployments.get(endpoint.endpoint_name)
        if deployment is None:
            return
        dead = [server for server in deployment.servers if server.container.process.poll() is not None]
        for server in dead:
            try:
                self._restart(endpoint.endpoint_name, server)
            except ContainerStartError as exc:
                del self._deployments[endpoint.endpoint_name]
                for running in deployment.servers:
                    self._retire(running.container)
                self._finish(endpoint, None, f"the model server died and could not be replaced: {exc}")
                return
        if dead:
            self._switch_route(deployment.served(endpoint.endpoint_name))

    def _restart(self, endpoint_name: str, server: _VariantServer) -> None:
        logger.warning(
            "endpoint %s: the model server %s of variant %s exited with %s; starting a new one",
            endpoint_name, server.container.url, server.variant, server.container.process.returncode,
        )  # fmt: skip
        logs = self._work_dir / "logs"
        server.container = start_container(server.model_name, server.model_dir, server.environment, logs)

    def _serve(self, endpoint: Any) -> None:
        """Blue/green: a server for every variant of the target config, all healthy before the
        routes switch at once; then the old servers drain and stop."""
        pending = getattr(endpoint, "pending_deployment_summary", None) or {}
        config_name = pending.get("EndpointConfigName") or endpoint.endpoint_config_name
        config = self._backend().endpoint_configs[config_name]
        logger.info("endpoint %s: serving %s", endpoint.endpoint_name, config_name)
        try:
            servers = self._start_variants(config)
        except (ContainerStartError, OSError, tarfile.TarError, KeyError) as exc:
            logger.warning("endpoint %s: %s", endpoint.endpoint_name, exc)
            self._finish(endpoint, None, f"model server did not start: {exc}")
            return
        deployment = _Deployment(config_name, servers, *_capture_settings(config))
        try:
            self._switch_route(deployment.served(endpoint.endpoint_name))
        except Exception:
            _stop_servers(servers)
            raise
        previous = self._deployments.get(endpoint.endpoint_name)
        self._deployments[endpoint.endpoint_name] = deployment
        for server in previous.servers if previous is not None else []:
            self._retire(server.container)
        self._finish(endpoint, config, None)

    def _start_variants(self, config: Any) -> list[_VariantServer]:
        """A model server for each production variant; if one does not start, those already up are
        stopped and its error raised, so a failed deployment leaves nothing running."""
        servers: list[_VariantServer] = []
        try:
            for variant in config.production_variants:
                servers.append(self._start_variant(variant))
        except BaseException:
            _stop_servers(servers)
            raise
        return servers

    def _start_variant(self, variant: dict[str, Any]) -> _VariantServer:
        model = self._backend()._models[variant["ModelName"]]  # moto keeps models private
        container_spec = model.primary_container or (model.containers or [{}])[0]
        environment = {str(k): str(v) for k, v in (container_spec.get("Environment") or {}).items()}
        model_dir = self._model_dir(model.model_name, str(container_spec["ModelDataUrl"]))
        container = start_container(model.model_name, model_dir, environment, self._work_dir / "logs")
        weight = _initial_weight(variant)
        return _VariantServer(
            str(variant["VariantName"]), model.model_name, model_dir, environment, container, weight
        )

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
        self._emit(endpoint_state_change(endpoint))

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


def _stop_servers(servers: list[_VariantServer]) -> None:
    for server in servers:
        server.container.stop()


def _initial_weight(variant: dict[str, Any]) -> float:
    """A config variant's ``InitialVariantWeight``; SageMaker's default is 1.0."""
    weight = variant.get("InitialVariantWeight")
    return 1.0 if weight is None else float(weight)


def _current_weight(summary: dict[str, Any]) -> float:
    """An endpoint variant's ``CurrentWeight`` (DescribeEndpoint's ProductionVariants)."""
    weight = summary.get("CurrentWeight")
    return 1.0 if weight is None else float(weight)


def _capture_settings(config: Any) -> tuple[int, str | None]:
    """The config's DataCaptureConfig as (sampling percentage, destination); (0, None): no capture."""
    capture = config.data_capture_config or {}
    if not (capture.get("EnableCapture", True) and capture.get("DestinationS3Uri")):
        return 0, None
    return int(capture.get("InitialSamplingPercentage", 100)), str(capture["DestinationS3Uri"])
