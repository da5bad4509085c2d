"""The local SageMaker Runtime against a real model container, seen by botocore clients; endpoints
with several production variants against stdlib fake containers."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.ports import free_port
from emulator.runtime import EndpointRouter, Route, RuntimeGateway
from handlers.api import endpoint_client
from handlers.api.error_responses import status_and_code
from handlers.api.errors import EndpointThrottledError, ModelRejectedInputError
from handlers.common.aws_clients import botocore_client
from tests.functional.local.conftest import ENDPOINT, REGION, VARIANT, FakeContainer, runtime_client

BODY = json.dumps({"instances": [[2.0, 0.0, 0.0], [-2.0, 1.0, 1.0]]})


def test_a_plain_boto3_client_gets_the_containers_answer(served: RuntimeGateway) -> None:
    # GIVEN the endpoint routed to a running model container
    client = runtime_client(served.url)

    # WHEN a user's boto3 client invokes it, with SageMaker's optional headers
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT,
        Body=BODY,
        ContentType="application/json",
        Accept="application/json",
        CustomAttributes="trace=abc",
        InferenceId="inference-1",
    )

    # THEN the container's answer comes back with the variant that served it
    document = json.loads(response["Body"].read())
    assert [p["label"] for p in document["predictions"]] == [0, 1]
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == VARIANT
    assert response["ResponseMetadata"]["RequestId"]
    assert served.invocations == 1
    assert not served.errors_by_code


def test_an_unknown_endpoint_is_a_validation_error(served: RuntimeGateway) -> None:
    # GIVEN a gateway that routes only ENDPOINT
    client = runtime_client(served.url)

    # WHEN another endpoint is invoked
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="no-such-endpoint", Body=BODY, ContentType="application/json")

    # THEN botocore parses SageMaker's ValidationError
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == "Endpoint no-such-endpoint of account 123456789012 not found."
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert served.errors_by_code["ValidationError"] == 1


def test_a_wrong_target_variant_is_a_validation_error(served: RuntimeGateway) -> None:
    # GIVEN an endpoint served by variant "primary"
    client = runtime_client(served.url)

    # WHEN a request targets another variant
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(
            EndpointName=ENDPOINT, Body=BODY, ContentType="application/json", TargetVariant="shadow"
        )

    # THEN it is refused before reaching the container
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_a_body_the_container_refuses_is_a_model_error(served: RuntimeGateway) -> None:
    # GIVEN a body that is not JSON
    client = runtime_client(served.url)

    # WHEN it is sent as JSON
    with pytest.raises(client.exceptions.ModelError) as caught:
        client.invoke_endpoint(EndpointName=ENDPOINT, Body=b"not json", ContentType="application/json")

    # THEN the container's 400 is carried by a 424 ModelError, with the modeled fields
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert "malformed JSON" in error["OriginalMessage"]
    assert error["Error"]["Message"].startswith("Received client error (400) from primary with message")
    assert error["LogStreamArn"].endswith(f"log-group:/aws/sagemaker/Endpoints/{ENDPOINT}")


def test_an_unreachable_container_is_service_unavailable(
    runtime: RuntimeGateway, router: EndpointRouter
) -> None:
    # GIVEN a route to a port nothing listens on
    router.set_route(ENDPOINT, Route(f"http://127.0.0.1:{free_port()}", VARIANT))

    # WHEN the endpoint is invoked
    with pytest.raises(ClientError) as caught:
        runtime_client(runtime.url).invoke_endpoint(
            EndpointName=ENDPOINT, Body=BODY, ContentType="application/json"
        )

    # THEN SageMaker's retryable 503 comes back
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert runtime.errors_by_code["ServiceUnavailable"] == 1


@pytest.fixture
def lambda_runtime_client(runtime: RuntimeGateway) -> Iterator[Any]:
    """The Lambda's own client (handlers.api.endpoint_client's timeouts), one attempt per call."""
    config = endpoint_client.TimeoutChain(max_attempts=1).check().botocore_config()
    client = botocore_client("sagemaker-runtime", config, runtime.url)
    endpoint_client.runtime_client.set(client)
    yield client
    endpoint_client.runtime_client.set(None)


@pytest.mark.usefixtures("aws_credentials", "lambda_runtime_client")
def test_the_lambdas_client_maps_each_gateway_answer(served: RuntimeGateway, router: EndpointRouter) -> None:
    # GIVEN the Lambda's client pointed at the gateway, and a second endpoint whose container is gone
    router.set_route("gone", Route(f"http://127.0.0.1:{free_port()}", VARIANT))

    # WHEN it invokes a served endpoint, then makes each failing call
    reply = endpoint_client.invoke_endpoint(ENDPOINT, b'{"instances": [[3.0, 0.0, 0.0]]}')
    with pytest.raises(ModelRejectedInputError) as refused:
        endpoint_client.invoke_endpoint(ENDPOINT, b'{"instances": [["three", 0.0, 0.0]]}')
    with pytest.raises(EndpointThrottledError) as busy:
        endpoint_client.invoke_endpoint("gone", b'{"instances": [[3.0, 0.0, 0.0]]}')
    with pytest.raises(ClientError) as unknown:
        endpoint_client.invoke_endpoint("no-such-endpoint", b'{"instances": [[3.0, 0.0, 0.0]]}')

    # THEN the reply is the container's JSON, and each error becomes the API status docs/api.md
    # promises: the container's own 4xx (it refused the input) is the caller's 400
    answer = json.loads(reply.payload)
    assert answer["predictions"][0]["label"] == 0 and reply.variant == VARIANT
    assert answer["predictions"][0]["confidence"] > 0.5
    assert status_and_code(refused.value) == (400, "invalid_request")
    assert "(it answered 400)" in refused.value.message
    assert status_and_code(busy.value) == (503, "endpoint_busy")
    assert status_and_code(unknown.value)[0] == 500


# --- endpoints with several production variants (stdlib fake containers answering with their name) --------

SEED = 7


@pytest.fixture
def variants() -> Iterator[dict[str, FakeContainer]]:
    """Variant name -> its container: ``a`` and ``b``."""
    containers = {name: FakeContainer(name).start() for name in ("a", "b")}
    yield containers
    for container in containers.values():
        container.stop()


def _route_ab(
    router: EndpointRouter, variants: dict[str, FakeContainer], weights: tuple[float, float]
) -> None:
    router.set_routes(
        ENDPOINT,
        [
            Route(variants[name].url, name, "config-ab", name, weight=weight)
            for name, weight in zip("ab", weights, strict=True)
        ],
    )


def _answered_by(client: Any, **target: str) -> tuple[str, str]:
    """(the container that answered, the invoked variant the response names)."""
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT, Body=b"[[1.0]]", ContentType="application/json", **target
    )
    return json.loads(response["Body"].read())["server"], response["InvokedProductionVariant"]


def test_a_target_variant_reaches_that_variant_and_the_answer_names_it(
    runtime: RuntimeGateway, router: EndpointRouter, variants: dict[str, FakeContainer]
) -> None:
    # GIVEN an endpoint with variants a (weight 1) and b (weight 0: only a target reaches it)
    _route_ab(router, variants, (1.0, 0.0))
    client = runtime_client(runtime.url)

    # WHEN each variant is targeted, then one that the endpoint does not have
    answers = [_answered_by(client, TargetVariant=name) for name in ("a", "b")]
    with pytest.raises(ClientError) as caught:
        _answered_by(client, TargetVariant="c")

    # THEN each request reached its variant's container, and the header names the variant
    assert answers == [("a", "a"), ("b", "b")]
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == f"Variant c not found for endpoint {ENDPOINT}."
    assert (variants["a"].served, variants["b"].served) == (1, 1)


def test_requests_naming_no_variant_follow_the_weights_drawn_from_the_injected_random_source(
    variants: dict[str, FakeContainer],
) -> None:
    # GIVEN a router drawing from a seeded random source, a at weight 0.8 and b at 0.2
    router = EndpointRouter(random.Random(SEED))
    gateway = RuntimeGateway(router, None, host="127.0.0.1", port=0, region=REGION)
    _route_ab(router, variants, (0.8, 0.2))
    gateway.start()
    try:
        # WHEN 40 requests name no variant
        client = runtime_client(gateway.url)
        answers = [_answered_by(client) for _ in range(40)]
    finally:
        gateway.stop()

    # THEN the variants answered exactly as the same draws from the same seed pick them
    draws = random.Random(SEED)
    expected = [draws.choices("ab", weights=[0.8, 0.2])[0] for _ in range(40)]
    assert 0 < expected.count("b") < expected.count("a")  # the seed exercises both variants
    assert answers == [(name, name) for name in expected]
    assert (variants["a"].served, variants["b"].served) == (expected.count("a"), expected.count("b"))


def test_new_weights_take_effect_for_the_next_request(
    runtime: RuntimeGateway, router: EndpointRouter, variants: dict[str, FakeContainer]
) -> None:
    client = runtime_client(runtime.url)
    # GIVEN all the weight on a
    _route_ab(router, variants, (1.0, 0.0))
    before = [_answered_by(client)[0] for _ in range(10)]

    # WHEN the weights move to b (UpdateEndpointWeightsAndCapacities, as local hosting applies it)
    _route_ab(router, variants, (0.0, 1.0))
    after = [_answered_by(client)[0] for _ in range(10)]

    # THEN weight 0 never received a request, weight 1 received them all
    assert before == ["a"] * 10 and after == ["b"] * 10


def test_an_endpoint_whose_weights_are_all_zero_answers_only_targeted_requests(
    runtime: RuntimeGateway, router: EndpointRouter, variants: dict[str, FakeContainer]
) -> None:
    # GIVEN both variants at weight 0
    _route_ab(router, variants, (0.0, 0.0))
    client = runtime_client(runtime.url)

    # WHEN a request names no variant, then one names b
    with pytest.raises(ClientError) as caught:
        _answered_by(client)
    targeted = _answered_by(client, TargetVariant="b")

    # THEN the first is a ValidationError that never reached a container; the targeted one is served
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert targeted == ("b", "b")
    assert (variants["a"].served, variants["b"].served) == (0, 1)
