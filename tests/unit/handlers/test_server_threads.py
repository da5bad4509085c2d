"""Torch threads per forward pass when workers share the cores, and the OpenMP/BLAS pool sizes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator

import pytest
import torch

from handlers.serving import server as model_server
from handlers.serving.threads import ForwardThreads


@pytest.fixture(autouse=True)
def restore_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _shared_counter() -> object:
    return multiprocessing.get_context("spawn").Value("i", 0)


def test_the_only_request_in_flight_gets_every_core_for_a_one_row_pass() -> None:
    threads = ForwardThreads(base=1, spare=2, in_flight=_shared_counter())
    # GIVEN one caller at a time on the whole server
    threads.started()
    # THEN its one-row pass runs on all the cores, and torch is set so
    assert threads.before_forward(rows=1) == 2 and torch.get_num_threads() == 2
    threads.finished()


def test_several_requests_in_flight_keep_each_worker_to_its_share() -> None:
    counter = _shared_counter()
    mine, other_worker = ForwardThreads(1, 2, counter), ForwardThreads(1, 2, counter)
    # GIVEN a request in flight on another worker
    other_worker.started()
    mine.started()
    # THEN this worker's one-row pass stays on its own thread
    assert mine.before_forward(rows=1) == 1 and torch.get_num_threads() == 1
    mine.finished()
    other_worker.finished()


def test_a_batch_keeps_the_workers_share_even_when_alone() -> None:
    threads = ForwardThreads(base=1, spare=2, in_flight=_shared_counter())
    threads.started()
    assert threads.before_forward(rows=8) == 1
    threads.finished()


def test_callers_that_recently_overlapped_do_not_count_as_alone() -> None:
    # GIVEN arrivals that kept finding another request in flight (two callers taking turns)
    counter = _shared_counter()
    threads, other = ForwardThreads(1, 2, counter), ForwardThreads(1, 2, counter)
    other.started()
    for _ in range(20):
        threads.started()
        threads.finished()
    other.finished()
    # WHEN the other caller is momentarily between two requests
    threads.started()
    # THEN the pass still uses one thread: the other caller is about to need its core
    assert threads.threads_for(rows=1, in_flight=1) == 1
    threads.finished()


def test_a_worker_that_runs_alone_always_uses_its_configured_threads() -> None:
    threads = ForwardThreads(base=2, spare=8, in_flight=None)
    threads.started()
    assert threads.before_forward(rows=1) == 2 and threads.before_forward(rows=64) == 2


def test_thread_pools_are_sized_to_the_workers_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in model_server.NATIVE_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a user's own setting wins
    model_server.limit_native_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "3"
