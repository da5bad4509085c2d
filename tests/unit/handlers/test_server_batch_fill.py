"""The batcher's fill target: under sustained load a free model thread waits (within the batch
delay) for the usual batch to gather; a lone caller, whose usual batch is one row, never waits.

The delay is set to 60 s, so a batcher that waited when it should not would fail the test by
timing out, and one that did not wait when it should would run the first request alone.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from handlers.serving.batching import FILL_SHARE, Batcher, BatchInfo

LONG_DELAY_S = 60.0
ANSWER_WITHIN_S = 10.0


class GatedModel:
    """``predict`` that holds its forward pass until ``release``; counts rows per pass."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, data: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.gate.wait(ANSWER_WITHIN_S), "the test never released the forward pass"
        return data * 2


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def _submit(
    batcher: Batcher, loop: asyncio.AbstractEventLoop, value: float, *, batchable: bool = True
) -> asyncio.Future[tuple]:
    """A one-row request; ``batchable=False`` sends a 1-D tensor, which always runs alone."""
    future: asyncio.Future[tuple[torch.Tensor, BatchInfo]] = loop.create_future()
    data = torch.tensor([[value]]) if batchable else torch.tensor([value])
    batcher.submit(lambda: data, future, loop)
    return future


def _answers(loop: asyncio.AbstractEventLoop, futures: list[asyncio.Future[tuple]]) -> list[tuple]:
    gathered = asyncio.wait_for(asyncio.gather(*futures), ANSWER_WITHIN_S)
    return list(loop.run_until_complete(gathered))


def _wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _run_batches_of(batcher: Batcher, model: GatedModel, loop: asyncio.AbstractEventLoop, size: int) -> None:
    """One batch of ``size`` requests: hold a pass (of an input that runs alone, so it never
    waits for a batch itself), queue ``size`` behind it, release."""
    model.gate.clear()
    model.entered.clear()
    holder = _submit(batcher, loop, -1.0, batchable=False)
    assert model.entered.wait(ANSWER_WITHIN_S)
    queued = [_submit(batcher, loop, float(i)) for i in range(size)]
    model.gate.set()
    answers = _answers(loop, [holder, *queued])
    assert [info.requests for _, info in answers[1:]] == [size] * size


def test_a_lone_caller_is_served_at_once_despite_a_long_batch_delay(loop: asyncio.AbstractEventLoop) -> None:
    model = GatedModel()
    batcher = Batcher(model, max_batch_size=32, max_batch_delay_s=LONG_DELAY_S)
    try:
        # WHEN one request at a time arrives, several times
        for value in range(3):
            [(prediction, info)] = _answers(loop, [_submit(batcher, loop, float(value))])
            # THEN each runs alone at once (a wait would time out) with its own answer
            assert info.requests == 1 and prediction.item() == 2 * value
    finally:
        batcher.close(5)


def test_under_sustained_load_a_free_model_waits_for_the_usual_batch(loop: asyncio.AbstractEventLoop) -> None:
    model = GatedModel()
    batcher = Batcher(model, max_batch_size=32, max_batch_delay_s=LONG_DELAY_S)
    try:
        # GIVEN a run of batches of 8 requests (load that keeps the model busy)
        for _ in range(8):
            _run_batches_of(batcher, model, loop, 8)
        usual = batcher.depth()["usual_batch_rows"]
        assert 4 < usual <= 8
        # WHEN requests then trickle in to a free model thread, one by one
        needed = math.ceil(FILL_SHARE * usual)
        assert needed >= 4  # waiting for several rows, not just the first
        futures = [_submit(batcher, loop, float(0))]
        assert _wait_for(lambda: batcher.depth()["filling"] == 1 or batcher.depth()["queued"] == 0)
        futures += [_submit(batcher, loop, float(i)) for i in range(1, needed)]
        answers = _answers(loop, futures)
        # THEN the first did not run alone: it waited for the usual share of a batch to gather
        assert [info.requests for _, info in answers] == [needed] * needed
        assert [prediction.item() for prediction, _ in answers] == [2.0 * i for i in range(needed)]
    finally:
        batcher.close(5)
