"""Local SageMaker hosting: the emulator reports endpoint states as SageMaker does, and the
deployer's verification judges them the same way (moto in-process; model servers faked here,
except in the last test, and in test_local_up.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from emulator import hosting
from emulator.runtime import EndpointRouter, RuntimeGateway
from emulator.server import routes_of
from handlers.deployer.handler import DeploymentFailedError
from handlers.deployer.verify import describe_endpoint_state, evaluate_endpoint
from tests.functional.local.conftest import WAIT_S, runtime_client

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENDPOINT = "mlp-dev-endpoint"


class FakeProcess:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeContainer:
    starts = 0

    def __init__(self, model_name: str) -> None:
        FakeContainer.starts += 1
        self.model_name = model_name
        self.url = f"http://127.0.0.1/{model_name}/{FakeContainer.starts}"
        self.stopped = threading.Event()
        self.process = FakeProcess()

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture
def sagemaker(aws_credentials: None) -> Iterator[Any]:
    undo = hosting.extend_moto()  # moto's classes are shared by the whole test session: undone below
    try:
        with mock_aws():
            client = boto3.client("sagemaker", region_name=REGION)
            for version in (1, 2, 3):
                client.create_model(
                    ModelName=f"model-v{version}",
                    ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
                    PrimaryContainer={
                        "Image": "image",
                        "ModelDataUrl": f"s3://artifacts/v{version}/model.tar.gz",
                    },
                )
                client.create_endpoint_config(
                    EndpointConfigName=f"config-v{version}",
                    ProductionVariants=[
                        {
                            "VariantName": "primary",
                            "ModelName": f"model-v{version}",
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": 1,
                        }
                    ],
                )
            yield client
    finally:
        undo()


@pytest.fixture
def served(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[hosting.LocalHosting, list[Any]]]:
    routes: list[hosting.ServedEndpoint] = []
    containers: dict[str, FakeContainer] = {}
    broken: set[str] = set()  # models whose next server does not come up

    def fake_start(model_name: str, model_dir: Path, environment: dict[str, str], log_dir: Path) -> Any:
        if model_name == "model-v3" or model_name in broken:  # a model whose server never comes up
            raise hosting.ContainerStartError("the model server for model-v3 exited with 3: bad weights")
        containers[model_name] = FakeContainer(model_name)
        return containers[model_name]

    monkeypatch.setattr(hosting, "start_container", fake_start)
    watcher = hosting.LocalHosting(
        lambda: hosting.sagemaker_backend(ACCOUNT, REGION),
        lambda uri, path: None,
        routes.append,
        tmp_path,
        poll_s=0.01,
    )
    monkeypatch.setattr(watcher, "_model_dir", lambda name, url: tmp_path / name)
    watcher.start()
    try:
        yield watcher, [routes, containers, broken]
    finally:
        watcher.stop()


def _wait_for(client: Any, status: str, not_status: str | None = None) -> dict[str, Any]:
    for _ in range(2000):
        answer = client.describe_endpoint(EndpointName=ENDPOINT)
        if answer["EndpointStatus"] == status and answer["EndpointStatus"] != not_status:
            return dict(answer)
        threading.Event().wait(0.005)
    raise AssertionError(f"endpoint never reached {status}: {answer['EndpointStatus']}")


def test_create_and_update_endpoint_report_their_progress_as_sagemaker_does(sagemaker: Any) -> None:
    # WHEN the deployer creates the endpoint (nothing serves it yet)
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    # THEN it is Creating, not InService
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Creating"
    # AND an update of an endpoint that is not InService is refused, as SageMaker refuses it
    with pytest.raises(sagemaker.exceptions.ClientError, match="Cannot update in-progress endpoint"):
        sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v2")


def test_an_update_switches_the_route_then_reports_the_new_config(sagemaker: Any, served: Any) -> None:
    watcher, (routes, containers, _) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    # WHEN version 2 is deployed with UpdateEndpoint
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v2")
    state = describe_endpoint_state(sagemaker, ENDPOINT)
    assert state is not None and state.status in ("Updating", "InService")
    answer = _wait_for(sagemaker, "InService")
    # THEN the endpoint is InService on the new config and the route moved to the new server
    assert answer["EndpointConfigName"] == "config-v2"
    assert [(r.endpoint, r.config_name, [v.model_name for v in r.variants]) for r in routes] == [
        (ENDPOINT, "config-v1", ["model-v1"]),
        (ENDPOINT, "config-v2", ["model-v2"]),
    ]
    # AND the deployer's verification accepts it, and the old server is stopped after its drain
    assert evaluate_endpoint(describe_endpoint_state(sagemaker, ENDPOINT), "config-v2") is not None
    assert containers["model-v1"].stopped.wait(5)
    assert watcher.containers() == {ENDPOINT: {"primary": containers["model-v2"].url}}


def test_an_update_whose_server_fails_rolls_back_and_the_deployer_sees_it(
    sagemaker: Any, served: Any
) -> None:
    _, (routes, _, _) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    # WHEN the new version's model server cannot start
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v3")
    for _ in range(2000):
        answer = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
        if answer["EndpointStatus"] != "Updating":
            break
        threading.Event().wait(0.005)
    # THEN the endpoint stays InService on the old config with the reason, the route unchanged
    assert answer["EndpointStatus"] == "InService" and answer["EndpointConfigName"] == "config-v1"
    assert "bad weights" in answer["FailureReason"]
    assert [r.config_name for r in routes] == ["config-v1"]
    # AND the deployer's verification reports the silent rollback as a failed deployment
    with pytest.raises(DeploymentFailedError, match="rolled the deployment back"):
        evaluate_endpoint(describe_endpoint_state(sagemaker, ENDPOINT), "config-v3")


def test_a_new_endpoint_whose_server_fails_is_failed(sagemaker: Any, served: Any) -> None:
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v3")
    answer = _wait_for(sagemaker, "Failed")
    assert "model server did not start" in answer["FailureReason"]


def test_a_metadata_update_keeps_the_approval_as_sagemaker_does(sagemaker: Any) -> None:
    # GIVEN an approved model package (the deployer's champion gate then records its comparison)
    from handlers.registry.client import ModelRegistry  # noqa: PLC0415

    sagemaker.create_model_package_group(ModelPackageGroupName="mlp-dev-models")
    registry = ModelRegistry(sagemaker)
    version = registry.register(
        "mlp-dev-models", "s3://artifacts/v1/model.tar.gz", "image", metrics={"accuracy": 0.9}
    )
    registry.approve(version.arn, "passed review")
    # WHEN only its metadata is updated
    sagemaker.update_model_package(
        ModelPackageArn=version.arn, CustomerMetadataProperties={"comparison.decision": "promote"}
    )
    # THEN the approval and its description stay, as in SageMaker (plain moto resets both)
    described = registry.describe(version.arn)
    assert (described.status, described.approval_description) == ("Approved", "passed review")
    assert described.customer_metadata == {"comparison.decision": "promote"}


def test_a_dead_model_server_is_replaced_and_the_endpoint_keeps_serving(sagemaker: Any, served: Any) -> None:
    watcher, (routes, containers, _) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    first = containers["model-v1"]
    # WHEN its model server dies (killed, out of memory)
    first.process.returncode = -9
    for _ in range(2000):
        if containers["model-v1"] is not first:
            break
        threading.Event().wait(0.005)
    # THEN a new server serves the same config, the route points at it, and the endpoint stays InService
    replacement = containers["model-v1"]
    assert replacement is not first and [v.url for v in routes[-1].variants] == [replacement.url]
    assert routes[-1].config_name == "config-v1"
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"


def test_a_dead_model_server_that_cannot_be_replaced_fails_the_endpoint(sagemaker: Any, served: Any) -> None:
    watcher, (routes, containers, broken) = served
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")
    _wait_for(sagemaker, "InService")
    # WHEN the server dies and its replacement cannot start
    broken.add("model-v1")
    containers["model-v1"].process.returncode = 1
    answer = _wait_for(sagemaker, "Failed")
    # THEN the endpoint says Failed, with the reason, instead of InService with nothing behind it
    assert "could not be replaced" in answer["FailureReason"]


def test_adding_a_tag_that_exists_replaces_its_value_as_sagemaker_does(sagemaker: Any) -> None:
    # GIVEN an endpoint tagged by a first deployment
    arn = sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-v1")["EndpointArn"]
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "ml-platform:expected-config", "Value": "config-v1"}])
    # WHEN a second deployment tags it again
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "ml-platform:expected-config", "Value": "config-v2"}])
    # THEN the key is there once, with the new value
    tags = sagemaker.list_tags(ResourceArn=arn)["Tags"]
    assert [t for t in tags if t["Key"] == "ml-platform:expected-config"] == [
        {"Key": "ml-platform:expected-config", "Value": "config-v2"}
    ]


# --- endpoint configs with several weighted production variants ------------------------------------------


def _create_models(client: Any, *names: str) -> None:
    for name in names:
        client.create_model(
            ModelName=name,
            ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model",
            PrimaryContainer={"Image": "image", "ModelDataUrl": f"s3://artifacts/{name}/model.tar.gz"},
        )


def _create_config(client: Any, name: str, variants: dict[str, tuple[str, float]]) -> None:
    """``variants``: variant name -> (model name, initial weight)."""
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialVariantWeight": weight,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
            for variant, (model, weight) in variants.items()
        ],
    )


def _weights(client: Any) -> dict[str, float]:
    variants = client.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    return {v["VariantName"]: v["CurrentWeight"] for v in variants}


def _served(route: hosting.ServedEndpoint) -> list[tuple[str, str, float]]:
    return [(v.variant, v.model_name, v.weight) for v in route.variants]


@pytest.fixture
def ab_endpoint(sagemaker: Any, served: Any) -> Any:
    """ENDPOINT InService on an A/B config: variant a = model-v1 (0.8), b = model-v2 (0.2)."""
    _create_config(sagemaker, "config-ab", {"a": ("model-v1", 0.8), "b": ("model-v2", 0.2)})
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-ab")
    _wait_for(sagemaker, "InService")
    return served


def test_every_variant_of_a_config_gets_its_own_server_and_its_weight(
    sagemaker: Any, ab_endpoint: Any
) -> None:
    # GIVEN (fixture) an endpoint created on a config with variants a (model-v1, 0.8) and b (model-v2, 0.2)
    watcher, (routes, containers, _) = ab_endpoint

    # THEN one route switch carried both variants, each with its own server and weight
    assert [r.config_name for r in routes] == ["config-ab"]
    assert _served(routes[0]) == [("a", "model-v1", 0.8), ("b", "model-v2", 0.2)]
    assert [v.url for v in routes[0].variants] == [containers["model-v1"].url, containers["model-v2"].url]
    assert watcher.containers() == {
        ENDPOINT: {"a": containers["model-v1"].url, "b": containers["model-v2"].url}
    }
    # AND DescribeEndpoint reports both variants' weights, as SageMaker does
    assert _weights(sagemaker) == {"a": 0.8, "b": 0.2}


def test_an_update_to_a_new_two_variant_config_switches_both_and_stops_the_old_servers(
    sagemaker: Any, ab_endpoint: Any
) -> None:
    watcher, (routes, containers, _) = ab_endpoint
    old_a, old_b = containers["model-v1"], containers["model-v2"]
    # GIVEN a new A/B config on two other models
    _create_models(sagemaker, "model-v4", "model-v5")
    _create_config(sagemaker, "config-next", {"a": ("model-v4", 0.5), "b": ("model-v5", 0.5)})

    # WHEN the endpoint is updated to it
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-next")
    answer = _wait_for(sagemaker, "InService")

    # THEN it is InService on the new config, both new variants behind one route switch
    assert answer["EndpointConfigName"] == "config-next"
    assert [r.config_name for r in routes] == ["config-ab", "config-next"]
    assert _served(routes[-1]) == [("a", "model-v4", 0.5), ("b", "model-v5", 0.5)]
    assert watcher.containers() == {
        ENDPOINT: {"a": containers["model-v4"].url, "b": containers["model-v5"].url}
    }
    # AND both old servers are stopped after their drain, the new ones keep running
    assert old_a.stopped.wait(5) and old_b.stopped.wait(5)
    assert not containers["model-v4"].stopped.is_set() and not containers["model-v5"].stopped.is_set()


def test_an_update_with_a_variant_that_cannot_start_rolls_back_and_stops_what_it_started(
    sagemaker: Any, ab_endpoint: Any
) -> None:
    watcher, (routes, containers, _) = ab_endpoint
    # GIVEN a config whose variant a starts (model-v4) and whose variant b never comes up (model-v3)
    _create_models(sagemaker, "model-v4")
    _create_config(sagemaker, "config-bad", {"a": ("model-v4", 0.5), "b": ("model-v3", 0.5)})

    # WHEN the endpoint is updated to it
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-bad")
    answer = _wait_for(sagemaker, "InService")

    # THEN the update rolled back: InService on the old config, with the reason, the routes unchanged
    assert answer["EndpointConfigName"] == "config-ab"
    assert "bad weights" in answer["FailureReason"]
    assert [r.config_name for r in routes] == ["config-ab"]
    # AND variant a's new server was stopped, the old servers still serve
    assert containers["model-v4"].stopped.is_set()
    assert watcher.containers() == {
        ENDPOINT: {"a": containers["model-v1"].url, "b": containers["model-v2"].url}
    }
    assert not containers["model-v1"].stopped.is_set() and not containers["model-v2"].stopped.is_set()


def test_a_new_endpoint_with_a_variant_that_cannot_start_is_failed_and_leaves_nothing_running(
    sagemaker: Any, served: Any
) -> None:
    watcher, (routes, containers, _) = served
    # GIVEN a config whose variant a starts and whose variant b never comes up
    _create_config(sagemaker, "config-bad", {"a": ("model-v1", 0.5), "b": ("model-v3", 0.5)})

    # WHEN an endpoint is created on it
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-bad")
    answer = _wait_for(sagemaker, "Failed")

    # THEN it is Failed, no route was set, and variant a's server was stopped
    assert "model server did not start" in answer["FailureReason"]
    assert routes == [] and watcher.containers() == {}
    assert containers["model-v1"].stopped.is_set()


def test_new_weights_move_the_traffic_before_the_endpoint_is_in_service_again(
    sagemaker: Any, ab_endpoint: Any
) -> None:
    watcher, (routes, containers, _) = ab_endpoint
    # WHEN b gets weight 0 and a only a new instance count (its weight is not named)
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[
            {"VariantName": "a", "DesiredInstanceCount": 2},
            {"VariantName": "b", "DesiredWeight": 0.0},
        ],
    )
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] in ("Updating", "InService")
    answer = _wait_for(sagemaker, "InService")

    # THEN the routes carry the new weights on the same servers, a's weight kept, as SageMaker does
    assert answer["EndpointConfigName"] == "config-ab" and "FailureReason" not in answer
    assert _served(routes[-1]) == [("a", "model-v1", 0.8), ("b", "model-v2", 0.0)]
    assert [v.url for v in routes[-1].variants] == [v.url for v in routes[0].variants]
    assert _weights(sagemaker) == {"a": 0.8, "b": 0.0}
    # AND no server was stopped: nothing to drain
    assert not containers["model-v1"].stopped.is_set() and not containers["model-v2"].stopped.is_set()


def test_weights_of_an_endpoint_that_is_not_in_service_cannot_change(sagemaker: Any) -> None:
    # GIVEN an endpoint still Creating (nothing serves it)
    _create_config(sagemaker, "config-ab", {"a": ("model-v1", 1.0), "b": ("model-v2", 0.0)})
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-ab")

    # WHEN its weights are updated
    with pytest.raises(sagemaker.exceptions.ClientError, match="Cannot update in-progress endpoint"):
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "b", "DesiredWeight": 1.0}]
        )

    # THEN it is refused, and the weights stay those of the config (0 shown, as SageMaker shows it)
    assert _weights(sagemaker) == {"a": 1.0, "b": 0.0}


def test_a_dead_server_of_one_variant_is_replaced_and_the_other_keeps_serving(
    sagemaker: Any, ab_endpoint: Any
) -> None:
    watcher, (routes, containers, _) = ab_endpoint
    server_a, dead_b = containers["model-v1"], containers["model-v2"]
    # WHEN variant b's model server dies
    dead_b.process.returncode = -9
    for _ in range(2000):
        if containers["model-v2"] is not dead_b and len(routes) == 2:
            break
        threading.Event().wait(0.005)

    # THEN b has a new server behind the route, a keeps its own, weights unchanged, still InService
    replacement = containers["model-v2"]
    assert replacement is not dead_b
    assert [v.url for v in routes[-1].variants] == [server_a.url, replacement.url]
    assert _served(routes[-1]) == [("a", "model-v1", 0.8), ("b", "model-v2", 0.2)]
    assert not server_a.stopped.is_set()
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"


def _wait_in_service(client: Any) -> dict[str, Any]:
    """Until ENDPOINT is InService; real model servers take seconds to come up."""
    deadline = time.monotonic() + 2 * WAIT_S
    while time.monotonic() < deadline:
        answer = client.describe_endpoint(EndpointName=ENDPOINT)
        if answer["EndpointStatus"] != "Creating" and answer["EndpointStatus"] != "Updating":
            return dict(answer)
        threading.Event().wait(0.05)
    raise AssertionError("the endpoint never left Creating/Updating")


def test_real_model_servers_serve_each_variant_as_targeted_and_as_weighted(
    sagemaker: Any, classifier_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN local hosting starting real model servers, wired to the runtime gateway as the emulator
    # wires them, and an endpoint created on an A/B config
    started: list[hosting.Container] = []
    real_start = hosting.start_container

    def recorded_start(*args: Any) -> hosting.Container:
        started.append(real_start(*args))
        return started[-1]

    monkeypatch.setattr(hosting, "start_container", recorded_start)
    router = EndpointRouter()
    gateway = RuntimeGateway(router, None, host="127.0.0.1", port=0, region=REGION)

    def switch(served: hosting.ServedEndpoint) -> None:  # as emulator.server's
        router.set_routes(served.endpoint, routes_of(served))

    watcher = hosting.LocalHosting(
        lambda: hosting.sagemaker_backend(ACCOUNT, REGION),
        lambda uri, path: None,
        switch,
        tmp_path,
        poll_s=0.01,
        wait_drained=router.wait_drained,
    )
    monkeypatch.setattr(watcher, "_model_dir", lambda name, url: classifier_dir)
    _create_config(sagemaker, "config-ab", {"a": ("model-v1", 0.5), "b": ("model-v2", 0.5)})
    gateway.start()
    watcher.start()
    try:
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-ab")
        assert _wait_in_service(sagemaker)["EndpointStatus"] == "InService"
        client = runtime_client(gateway.url)

        # WHEN each variant is targeted, then b's weight goes to 0 and requests name no variant
        targeted = [_invoke(client, variant) for variant in ("a", "b")]
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=ENDPOINT,
            DesiredWeightsAndCapacities=[
                {"VariantName": "a", "DesiredWeight": 1.0},
                {"VariantName": "b", "DesiredWeight": 0.0},
            ],
        )
        assert _wait_in_service(sagemaker)["EndpointStatus"] == "InService"
        weighted = [_invoke(client, None) for _ in range(10)]
    finally:
        watcher.stop()
        gateway.stop()

    # THEN each variant's own server answered its requests, the header naming it; weight 0 got none
    assert targeted == [("a", [0]), ("b", [0])]
    assert weighted == [("a", [0])] * 10
    # AND stopping the hosting stopped both model servers
    assert len(started) == 2 and all(container.process.poll() is not None for container in started)


def _invoke(client: Any, variant: str | None) -> tuple[str, list[int]]:
    """(the invoked variant, the predicted labels) for one row whose first feature is positive."""
    target = {"TargetVariant": variant} if variant else {}
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT,
        Body=b'{"instances": [[2.0, 0.0, 0.0]]}',
        ContentType="application/json",
        **target,
    )
    labels = [p["label"] for p in json.loads(response["Body"].read())["predictions"]]
    return response["InvokedProductionVariant"], labels
