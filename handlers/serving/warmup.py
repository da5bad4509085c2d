"""Warm-up passes at start, so ``/ping`` turns healthy only when the first real request will be fast.

A process's first forward passes are slow: CUDA context, cuBLAS/cuDNN handles and kernel choice on a
GPU, the model thread's OpenMP pool and allocator growth on a CPU. So after ``model_fn`` the server
sends the artifact's sample request (``code/sample-request.json``: one JSON request body, as
``POST /invocations`` would get it) down the path requests take: ``input_fn``, then ``predict_fn``
on the batcher's model thread, then ``output_fn``. Each round runs one row, then a full batch
(``max_batch_size`` rows: the sample's rows repeated, as concurrent requests are concatenated);
inputs that are not rows (not a tensor, array or list of instances) run as they are. With
``transform_fn`` the body goes through it instead. The passes count in no metric.

Without a sample request there is no warm-up (one info line says so); ``MODEL_SERVER_WARMUP=0``
skips it. A failed pass is a load failure: the server never turns healthy, and the log says why.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handlers.common.contracts import SAMPLE_REQUEST_FILE
from handlers.serving.artifact import JSON, InferenceFunctions, ServingError
from handlers.serving.batching import Batcher, BatchInfo

logger = logging.getLogger("handlers.serving.server")

ROUNDS = 2  # the second round runs on warm caches; the first alone can still leave lazy work behind


class WarmUpError(Exception):
    """A warm-up pass failed: the artifact cannot serve its own sample request."""


@dataclass(frozen=True)
class WarmUp:
    """What the warm-up needs of the loaded artifact."""

    functions: InferenceFunctions
    model: Any
    batcher: Batcher
    max_batch_size: int
    batching: bool
    accept: str = JSON
    timeout_s: float = 60.0


def read_sample_request(model_dir: Path) -> bytes | None:
    """The artifact's sample request body, or None when it carries none."""
    path = model_dir / SAMPLE_REQUEST_FILE
    return path.read_bytes() if path.is_file() else None


def warm_up(plan: WarmUp, body: bytes) -> int:
    """Run the warm-up passes with ``body``; returns how many ran. Raises ``WarmUpError`` saying why
    a pass failed. Runs its own event loop: call it where none is running (the loading thread)."""
    try:
        payload = body.decode("utf-8")  # JSON is handed to input_fn decoded, as a request's body is
    except UnicodeDecodeError:
        raise WarmUpError(f"{SAMPLE_REQUEST_FILE} is not UTF-8 text") from None
    try:
        return asyncio.run(_passes(plan, payload))
    except WarmUpError:
        raise
    except Exception as exc:
        raise WarmUpError(f"the warm-up with {SAMPLE_REQUEST_FILE} failed: {_reason(exc)}") from exc


async def _passes(plan: WarmUp, payload: str) -> int:
    functions = plan.functions
    if functions.transform_fn is not None:
        for _ in range(ROUNDS):
            functions.transform_fn(plan.model, payload, JSON, plan.accept)
        return ROUNDS
    sizes: tuple[int | None, ...] = (None,)
    if row_count(functions.input_fn(payload, JSON)) is not None:
        sizes = (1, plan.max_batch_size) if plan.batching and plan.max_batch_size > 1 else (1,)
    loop = asyncio.get_running_loop()
    for _ in range(ROUNDS):
        for rows in sizes:
            future: asyncio.Future[tuple[Any, BatchInfo]] = loop.create_future()
            plan.batcher.submit(functools.partial(_decode, functions, payload, rows), future, loop)
            prediction, _ = await asyncio.wait_for(future, plan.timeout_s)
            functions.output_fn(prediction, plan.accept)
    return ROUNDS * len(sizes)


def _decode(functions: InferenceFunctions, payload: str, rows: int | None) -> Any:
    return with_rows(functions.input_fn(payload, JSON), rows)


def row_count(data: Any) -> int | None:
    """Rows along the first dimension of an input the batcher concatenates, else None."""
    if isinstance(data, torch.Tensor | np.ndarray) and data.ndim >= 2 and data.shape[0] > 0:
        return int(data.shape[0])
    if type(data) is list and data:
        return len(data)
    return None


def with_rows(data: Any, rows: int | None) -> Any:
    """``data`` cut or repeated along its first dimension to ``rows`` rows (``None``: as it is)."""
    count = row_count(data) if rows is not None else None
    if count is None or rows is None or count == rows:
        return data
    copies = -(-rows // count)  # ceil
    if isinstance(data, torch.Tensor):
        return torch.cat([data] * copies)[:rows]
    if isinstance(data, np.ndarray):
        return np.concatenate([data] * copies)[:rows]
    return (data * copies)[:rows]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ServingError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "no answer within the request timeout"
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", None) or exc).strip()
    first = text.splitlines()[0] if text else ""
    prefix = f"HTTP {status}: " if isinstance(status, int) else f"{type(exc).__name__}: "
    return f"{prefix}{first}" if first else type(exc).__name__
