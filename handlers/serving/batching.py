"""Dynamic batching: concurrent requests share one ``predict_fn`` call, on one model thread per
worker, with a bounded fill window so a lone caller never waits (the policy: docs/serving.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from handlers.serving.metrics import ForwardPasses

logger = logging.getLogger(__name__)

FILL_SHARE = 0.75  # under load, wait (within max_batch_delay) for this share of the usual batch rows
_USUAL_WEIGHT = 0.2  # weight of the newest batch in the running mean of rows per batch


@dataclass(frozen=True)
class BatchInfo:
    """How a request was served: how many requests and rows shared its forward pass."""

    requests: int
    rows: int


_NO_INFO = BatchInfo(1, 0)


class _Item:
    __slots__ = ("data", "rows", "key", "enqueued", "future", "loop", "done", "result", "error", "info")

    def __init__(
        self,
        data: Any,
        rows: int | None,  # None: cannot be batched with others
        key: tuple[Any, ...] | None,
        future: asyncio.Future[tuple[Any, BatchInfo]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.data, self.rows, self.key = data, rows, key
        self.future, self.loop = future, loop
        self.enqueued = time.monotonic()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.info = _NO_INFO

    def finish(self, result: Any, error: BaseException | None, info: BatchInfo) -> None:
        self.result, self.error, self.info, self.done = result, error, info, True


def _resolve(items: list[_Item]) -> None:
    """On the event loop: hand each finished item's outcome to its waiting request."""
    for item in items:
        future = item.future
        if future.done():  # timed out meanwhile
            continue
        if item.error is not None:
            future.set_exception(item.error)
        else:
            future.set_result((item.result, item.info))


class BatchMetrics:
    """Counters for ``GET /metrics`` (thread-safe; one set per worker process); ``passes`` holds
    the per-pass histograms the Prometheus and CloudWatch figures come from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.passes = ForwardPasses()
        self.forward_passes = 0
        self.batched_requests = 0
        self.rows = 0
        self.retried_alone = 0
        self.requests_per_batch: dict[int, int] = {}

    def record(self, requests: int, rows: int, seconds: float) -> None:
        with self._lock:
            self.passes.record(requests, rows, seconds)
            self.forward_passes += 1
            self.batched_requests += requests
            self.rows += rows
            self.requests_per_batch[requests] = self.requests_per_batch.get(requests, 0) + 1

    def record_retry(self, requests: int) -> None:
        with self._lock:
            self.retried_alone += requests

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            passes = self.forward_passes
            return {
                "batches": passes,
                "batched_requests": self.batched_requests,
                "rows": self.rows,
                "mean_batch_size": round(self.batched_requests / passes, 3) if passes else 0.0,
                "mean_batch_rows": round(self.rows / passes, 3) if passes else 0.0,
                "largest_batch": max(self.requests_per_batch, default=0),
                "batches_with_more_than_one_request": sum(
                    count for size, count in self.requests_per_batch.items() if size > 1
                ),
                "batch_size_histogram": {str(k): v for k, v in sorted(self.requests_per_batch.items())},
                "retried_alone": self.retried_alone,
            }


class Batcher:
    """Runs ``predict(data)`` for concurrent callers, sharing forward passes when allowed.

    Parameters: ``predict`` the model call (``predict_fn`` bound to the model); ``enabled`` False
    gives one request per forward pass (still one at a time); ``max_batch_size`` rows per pass;
    ``max_batch_delay_s`` the longest a queued request waits for others to join its batch.
    """

    def __init__(
        self,
        predict: Callable[[Any], Any],
        *,
        enabled: bool = True,
        max_batch_size: int = 32,
        max_batch_delay_s: float = 0.005,
        metrics: BatchMetrics | None = None,
    ) -> None:
        self._predict = predict
        self.enabled = enabled
        self._max_rows = max(1, max_batch_size)
        self._max_delay = max(0.0, max_batch_delay_s)
        self.metrics = metrics or BatchMetrics()
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = False  # the model thread is collecting or running a batch
        self._preparing = 0  # accepted requests still in input_fn
        self._usual_rows = 1.0  # running mean of rows per batch
        self._filling = False  # the model thread is waiting for a batch to fill
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="model", daemon=True)
        self._thread.start()

    def depth(self) -> dict[str, float]:
        """Requests in ``input_fn``, queued for the model, and whether a batch is running."""
        with self._cond:
            return {
                "preparing": self._preparing,
                "queued": len(self._queue),
                "model_busy": int(self._busy),
                "filling": int(self._filling),
                "usual_batch_rows": round(self._usual_rows, 2),
            }

    def queued(self) -> int:
        """Requests queued for the model (no lock: for a metric sampled once a second)."""
        return len(self._queue)

    def submit(
        self,
        prepare: Callable[[], Any],
        future: asyncio.Future[tuple[Any, BatchInfo]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Run ``prepare()`` (the request's ``input_fn``) on the calling thread, then queue its
        result; ``future`` (of ``loop``) gets ``(prediction, BatchInfo)`` or the error. Raises what
        ``prepare`` raises (nothing is queued then)."""
        cond = self._cond
        with cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._preparing += 1
        try:
            data = prepare()
        except BaseException:
            with cond:
                self._preparing -= 1
                cond.notify()
            raise
        rows, key = _batch_key(data) if self.enabled else (None, None)
        item = _Item(data, rows, key, future, loop)
        with cond:
            self._preparing -= 1
            self._queue.append(item)
            cond.notify()

    def close(self, timeout: float | None = None) -> None:
        """Stop the model thread once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _serve(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue:
                    if self._closed:
                        return
                    cond.wait()
                self._busy = True
                batch = self._collect()
            try:
                self._execute(batch)
            except BaseException:  # the items carry the error; keep serving
                logger.exception("a forward pass failed outside predict_fn")
            finally:
                with cond:
                    self._busy = False
                self._deliver(batch)

    @staticmethod
    def _deliver(batch: list[_Item]) -> None:
        loop = batch[0].loop
        if all(item.loop is loop for item in batch):
            groups = [(loop, batch)]
        else:
            by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
            for item in batch:
                by_loop.setdefault(item.loop, []).append(item)
            groups = list(by_loop.items())
        for target, items in groups:
            try:
                target.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that event loop is closed: nobody waits any more
                pass

    def _collect(self) -> list[_Item]:
        """Pop the next batch (called with the lock held; may wait for requests on the way)."""
        first = self._queue[0]
        if not self.enabled or first.rows is None:
            return [self._queue.popleft()]
        deadline = first.enqueued + self._max_delay
        enough = min(self._max_rows, FILL_SHARE * self._usual_rows)
        while True:
            count, rows, blocked = self._fitting()
            if blocked or rows >= self._max_rows or (self._preparing == 0 and rows >= enough):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._filling = True
            self._cond.wait(remaining)
            self._filling = False
        self._usual_rows += (rows - self._usual_rows) * _USUAL_WEIGHT
        return [self._queue.popleft() for _ in range(count)]

    def _fitting(self) -> tuple[int, int, bool]:
        """(items from the front that batch together, their rows, whether the next one can't join)."""
        queue = self._queue
        first = queue[0]
        count, rows = 1, first.rows or 0
        for index in range(1, len(queue)):
            item = queue[index]
            if item.rows is None or item.key != first.key or rows + item.rows > self._max_rows:
                return count, rows, True
            count, rows = count + 1, rows + item.rows
        return count, rows, False

    def _execute(self, batch: list[_Item]) -> None:
        try:
            if len(batch) == 1:
                self._run_alone(batch[0])
            else:
                self._run_batch(batch)
        except BaseException as exc:  # never leave a waiting request hanging
            for item in batch:
                if not item.done:
                    item.finish(None, exc, BatchInfo(len(batch), 0))
            raise

    def _run_alone(self, item: _Item) -> None:
        rows = item.rows or leading_rows(item.data)
        started = time.perf_counter()
        try:
            result = self._predict(item.data)
        except Exception as exc:
            item.finish(None, exc, BatchInfo(1, rows))
        else:
            item.finish(result, None, BatchInfo(1, rows))
        self.metrics.record(1, rows, time.perf_counter() - started)

    def _run_batch(self, batch: list[_Item]) -> None:
        sizes = [item.rows or 0 for item in batch]
        started = time.perf_counter()
        try:
            output = self._predict(_concatenate([item.data for item in batch]))
        except Exception:
            self.metrics.record(len(batch), sum(sizes), time.perf_counter() - started)
            logger.warning("a batch of %d requests failed; retrying each alone", len(batch), exc_info=True)
            self._retry_alone(batch)
            return
        seconds = time.perf_counter() - started
        self.metrics.record(len(batch), sum(sizes), seconds)
        parts = split_rows(output, sizes)
        if parts is None:
            logger.warning(
                "predict_fn output (%s) cannot be split per request; batching is now off",
                type(output).__name__,
            )
            self.enabled = False
            self._retry_alone(batch)
            return
        info = BatchInfo(len(batch), sum(sizes))
        for item, part in zip(batch, parts, strict=True):
            item.finish(part, None, info)
        logger.debug(
            "batch of %d requests, %d rows in %.2f ms",
            info.requests,
            info.rows,
            seconds * 1000,
        )

    def _retry_alone(self, batch: list[_Item]) -> None:
        self.metrics.record_retry(len(batch))
        for item in batch:
            self._run_alone(item)


def _batch_key(data: Any) -> tuple[int | None, tuple[Any, ...] | None]:
    """(rows, compatibility key) for an input that can share a batch, else (None, None)."""
    if isinstance(data, torch.Tensor) and data.dim() >= 2 and data.shape[0] > 0:
        return int(data.shape[0]), ("torch", data.dtype, data.device, tuple(data.shape[1:]), data.layout)
    if isinstance(data, np.ndarray) and data.ndim >= 2 and data.shape[0] > 0 and data.dtype != object:
        return int(data.shape[0]), ("numpy", data.dtype.str, tuple(data.shape[1:]))
    # A list of instances (our handler's input_fn): lists concatenate; the handler checks each row.
    if type(data) is list and data:
        return len(data), ("list",)
    return None, None


def leading_rows(data: Any) -> int:
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return len(data) if isinstance(data, list | tuple) else 1


def _concatenate(inputs: list[Any]) -> Any:
    if type(inputs[0]) is list:
        return [row for rows in inputs for row in rows]
    if isinstance(inputs[0], torch.Tensor):
        return torch.cat(inputs, dim=0)
    return np.concatenate(inputs, axis=0)


def split_rows(output: Any, sizes: Sequence[int]) -> list[Any] | None:
    """``output`` cut into consecutive row blocks of ``sizes``, or None if it is not row-aligned."""
    total = sum(sizes)
    bounds = np.cumsum([0, *sizes]).tolist()
    if isinstance(output, torch.Tensor | np.ndarray):
        if output.ndim >= 1 and output.shape[0] == total:
            return [output[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return None
    if type(output) in (list, tuple) and len(output) == total:
        return [output[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if type(output) is dict and output:
        # Row-aligned values are cut per request; scalars (e.g. the model's name) go to every request.
        shared = {
            name: value for name, value in output.items() if isinstance(value, str | int | float | bool)
        }
        columns = {name: split_rows(value, sizes) for name, value in output.items() if name not in shared}
        if not columns or any(parts is None for parts in columns.values()):
            return None
        return [
            {**shared, **{name: parts[i] for name, parts in columns.items() if parts is not None}}
            for i in range(len(sizes))
        ]
    return None
