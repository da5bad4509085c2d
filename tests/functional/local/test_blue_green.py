"""Blue/green through the runtime gateway: a route switch under continuous load loses nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from emulator.runtime import EndpointRouter, Route, RuntimeGateway
from tests.functional.local.conftest import ENDPOINT, VARIANT, WAIT_S, FakeContainer, runtime_client

CLIENTS = 4


@dataclass
class Load:
    """Client threads invoking the endpoint in a loop, recording who answered, in order."""

    url: str
    answers: list[list[str]] = field(default_factory=lambda: [[] for _ in range(CLIENTS)])
    failures: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    progress: threading.Condition = field(default_factory=threading.Condition)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        # Clients are made here: boto3's default session is not safe to use from several threads.
        clients = [runtime_client(self.url) for _ in range(CLIENTS)]
        for index, client in enumerate(clients):
            thread = threading.Thread(target=self._run, args=(index, client), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, index: int, client: Any) -> None:
        while not self.stop.is_set():
            try:
                response = client.invoke_endpoint(
                    EndpointName=ENDPOINT, Body=b'{"instances": [[1.0]]}', ContentType="application/json"
                )
                answer = json.loads(response["Body"].read())["server"]
            except Exception as exc:  # every failure counts against the switch
                with self.progress:
                    self.failures.append(exc)
                    self.progress.notify_all()
                continue
            with self.progress:
                self.answers[index].append(answer)
                self.progress.notify_all()

    def wait_for(self, server: str, count: int) -> None:
        """Until ``count`` more answers from ``server`` arrived (from now)."""
        with self.progress:
            seen = self.count(server)
            assert self.progress.wait_for(lambda: self.count(server) >= seen + count, WAIT_S)

    def count(self, server: str) -> int:
        return sum(answers.count(server) for answers in self.answers)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(WAIT_S)


@pytest.fixture
def green() -> Iterator[FakeContainer]:
    container = FakeContainer("green").start()
    yield container
    container.stop()


def test_switching_routes_under_load_fails_no_request(
    runtime: RuntimeGateway, router: EndpointRouter, fake_container: FakeContainer, green: FakeContainer
) -> None:
    # GIVEN the endpoint on blue, and clients invoking it continuously
    blue = fake_container
    router.set_route(ENDPOINT, Route(blue.url, VARIANT, "config-blue", "1"))
    load = Load(runtime.url)
    load.start()
    load.wait_for("blue", 20)

    # WHEN blue holds the requests it has, the route switches to green, blue's requests finish,
    # and blue is stopped once the router says nothing is in flight on it
    blue.gate.clear()
    blue.wait_for(lambda c: c.held >= 1)
    previous = router.set_route(ENDPOINT, Route(green.url, VARIANT, "config-green", "2"))
    in_flight_on_blue = router.in_flight(blue.url)
    blue.gate.set()
    assert router.wait_drained(blue.url, WAIT_S)
    blue.stop()
    load.wait_for("green", 20)
    load.finish()

    # THEN nothing failed, the held requests finished on blue, and each client moved to green for good
    assert load.failures == []
    assert previous is not None and previous.container_url == blue.url
    assert in_flight_on_blue >= 1
    assert blue.served == load.count("blue")
    for answers in load.answers:
        first_green = answers.index("green")
        assert set(answers[first_green:]) == {"green"}, answers
    assert runtime.errors_by_code == {}


def test_wait_drained_reports_requests_still_in_flight(router: EndpointRouter) -> None:
    # GIVEN a request that picked blue and is still running
    router.set_route(ENDPOINT, Route("http://blue", VARIANT))
    with router.acquire(ENDPOINT) as route:
        router.set_route(ENDPOINT, Route("http://green", VARIANT))

        # WHEN the caller asks whether blue is drained without waiting
        drained_while_running = router.wait_drained("http://blue", timeout=0)

    # THEN blue counted the request until it ended, and the request kept its route
    assert route is not None and route.container_url == "http://blue"
    assert drained_while_running is False
    assert router.wait_drained("http://blue", timeout=0) is True
    assert router.in_flight("http://green") == 0


def test_a_removed_endpoint_is_unknown(router: EndpointRouter) -> None:
    # GIVEN a routed endpoint
    router.set_route(ENDPOINT, Route("http://blue", VARIANT))

    # WHEN it is removed
    removed = router.remove(ENDPOINT)

    # THEN no request finds it
    assert [route.container_url for route in removed] == ["http://blue"]
    assert ENDPOINT not in router.routes()
    with router.acquire(ENDPOINT) as route:
        assert route is None
