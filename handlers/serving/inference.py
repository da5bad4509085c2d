"""SageMaker PyTorch serving handler: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

Packaged as ``code/inference.py`` in ``model.tar.gz`` (see ``training_jobs/package.py``), next
to a copy of the ``models`` package (``code/models/``), which the container puts on
``sys.path``. It imports only torch, the standard library and ``models``, so it runs in the
stock SageMaker PyTorch inference container with no install step.

Requests: ``application/json`` (``{"instances": [...]}`` or a bare list) for every model, and
``text/csv`` (one row of numbers per instance) for the numeric models. Responses: JSON,
``{"model": ..., "predictions": [{"label": ..., "confidence": ...}]}`` for classifiers,
``{"model": ..., "predictions": [{"value": ...}]}`` for regressors (no confidence: a point
estimate has none). Errors carry their HTTP status (``status_code``); ``error_response`` maps
any exception to (status, body) in one place and never exposes a stack trace.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models import REGRESSION, InputShapeError, TaskModel, load_model

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "text/csv"
# SageMaker real-time endpoints take payloads up to 6 MB; refuse before parsing anything bigger.
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_INSTANCES = 1000


class InferenceError(Exception):
    """A request the handler refuses; ``status_code`` is the HTTP status the caller gets."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequestError(InferenceError):
    status_code = 400


class PayloadTooLargeError(InferenceError):
    status_code = 413


class UnsupportedContentTypeError(InferenceError):
    status_code = 415


class NotAcceptableError(InferenceError):
    status_code = 406


class WrongShapeError(InferenceError):
    status_code = 422


@dataclass(frozen=True)
class ServedModel:
    model: TaskModel
    device: torch.device
    version: str | None = None  # the registry version the deployer put in MODEL_VERSION


def model_fn(model_dir: str) -> ServedModel:
    """Load ``model.pt`` + ``model_config.json`` from ``model_dir`` (the extracted archive root)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(Path(model_dir), map_location=device)
    logger.info("loaded %s on %s", model.architecture_name, device)
    return ServedModel(model=model, device=device, version=os.environ.get("MODEL_VERSION") or None)


def input_fn(request_body: bytes | str, request_content_type: str | None) -> list[Any]:
    """Decode the body into a list of raw instances (shape is checked in ``predict_fn``)."""
    body = request_body.encode() if isinstance(request_body, str) else bytes(request_body)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    content_type = _media_type(request_content_type)
    if content_type not in {JSON_CONTENT_TYPE, CSV_CONTENT_TYPE}:
        raise UnsupportedContentTypeError(
            f"unsupported content type {request_content_type!r}; "
            f"use {JSON_CONTENT_TYPE} or {CSV_CONTENT_TYPE}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequestError("body is not valid UTF-8") from None
    if not text.strip():
        raise MalformedRequestError("body is empty")
    instances = _json_instances(text) if content_type == JSON_CONTENT_TYPE else _csv_instances(text)
    if not instances:
        raise MalformedRequestError("no instances in the request")
    if len(instances) > MAX_INSTANCES:
        raise PayloadTooLargeError(f"{len(instances)} instances; the limit is {MAX_INSTANCES}")
    return instances


def predict_fn(data: list[Any], model: ServedModel) -> dict[str, Any]:
    """Run the model; classifiers return label + softmax confidence, regressors the value."""
    try:
        inputs = [_to_device(t, model.device) for t in model.model.encode(data)]
    except InputShapeError as exc:
        raise WrongShapeError(str(exc)) from None
    with torch.inference_mode():
        output = model.model(*inputs).detach().float().cpu()
    if model.model.task_kind == REGRESSION:
        return _answer(model, [{"value": float(v)} for v in output.tolist()])
    confidence, index = torch.softmax(output, dim=1).max(dim=1)
    labels = model.model.labels
    predictions = [
        {"label": labels[i], "confidence": round(float(c), 6)}
        for i, c in zip(index.tolist(), confidence.tolist(), strict=True)
    ]
    return _answer(model, predictions)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """On a GPU through pinned host memory (one asynchronous DMA copy); on the CPU unchanged."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _answer(model: ServedModel, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": model.model.architecture_name, "predictions": predictions}
    if model.version:
        answer["model_version"] = model.version
    return answer


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str, str]:
    """Encode as JSON; returns (body, content type) as the SageMaker toolkit accepts."""
    media_types = {_media_type(part) for part in (accept or "").split(",")}
    if not media_types & {JSON_CONTENT_TYPE, "*/*", "application/*", ""}:
        raise NotAcceptableError(f"cannot produce {accept!r}; this model answers {JSON_CONTENT_TYPE}")
    return json.dumps(prediction), JSON_CONTENT_TYPE


def error_response(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The one place exceptions become HTTP answers: our errors as they are, anything else 500
    with a request id to find the logged traceback (never the traceback itself)."""
    if isinstance(exc, InferenceError):
        return exc.status_code, {"error": exc.message, "status": exc.status_code}
    request_id = uuid.uuid4().hex
    logger.exception("unexpected error (request id %s)", request_id)
    return 500, {"error": "internal error", "status": 500, "request_id": request_id}


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _json_instances(text: str) -> list[Any]:
    try:
        document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, ValueError) as exc:
        raise MalformedRequestError(f"malformed JSON: {exc}") from None
    instances = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(instances, list):
        raise MalformedRequestError('expected {"instances": [...]} or a JSON list')
    return instances


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")  # NaN / Infinity are not valid inputs


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 parses to inf
        raise ValueError(f"{literal} is out of range")
    return value


def _csv_instances(text: str) -> list[Any]:
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    try:
        instances = [[float(cell) for cell in row] for row in rows]
    except ValueError:
        raise MalformedRequestError("CSV cells must be numbers") from None
    if any(not math.isfinite(value) for row in instances for value in row):
        raise MalformedRequestError("NaN and infinite values are not allowed")
    return instances
