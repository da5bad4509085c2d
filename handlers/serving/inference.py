"""SageMaker PyTorch serving handler: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

Packaged as ``code/inference.py`` in ``model.tar.gz`` (see ``training_jobs/package.py``), next
to a copy of the ``models`` package (``code/models/``), which the container puts on
``sys.path``. It imports only torch, the standard library and ``models``, so it runs in the
stock SageMaker PyTorch inference container with no install step.

Requests: ``application/json`` (``{"instances": [...]}`` or a bare list) for every model;
``text/csv`` (one row of numbers per instance) and ``application/x-npy`` (a numeric array, one row
per instance: the SageMaker Python SDK's ``NumpySerializer``) for the numeric models. Responses,
as ``Accept`` asks: JSON, ``{"model": ..., "predictions": [{"label": ..., "confidence": ...}]}``
for classifiers, ``{"model": ..., "predictions": [{"value": ...}]}`` for regressors (no
confidence: a point estimate has none); ``text/csv`` (``label,confidence`` or ``value`` per line);
``application/x-npy`` (a structured array with those fields). Errors carry their HTTP status
(``status_code``); ``error_response`` maps any exception to (status, body) in one place and never
exposes a stack trace. Inside the SageMaker PyTorch container they are its inference toolkit's own
error type, so the toolkit answers with their status instead of 500 (docs/serving.md says what
the toolkit still writes into the body).
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

try:  # inside the SageMaker PyTorch container: the toolkit keeps the status of its own error type
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # the platform's model server reads ``status_code`` from any exception
    _ToolkitError = Exception

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "text/csv"
NPY_CONTENT_TYPE = "application/x-npy"
REQUEST_TYPES = (JSON_CONTENT_TYPE, CSV_CONTENT_TYPE, NPY_CONTENT_TYPE)
# The body limit is the container's SAGEMAKER_MAX_PAYLOAD_IN_MB, which the model server reads too;
# 6 is handlers.common.contracts.MAX_PAYLOAD_MB (this file ships alone: a test keeps them equal).
MAX_PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
DEFAULT_MAX_PAYLOAD_MB = 6
FLOAT32_MAX = 3.4028234663852886e38  # the models compute in float32: a larger input becomes inf
_MAX_INT_DIGITS = 39  # FLOAT32_MAX has 39 digits: a longer integer literal is out of range
MAX_INSTANCES = 1000
NON_FINITE_OUTPUT = "the model produced a non-finite value (NaN or Infinity)"


class InferenceError(_ToolkitError):
    """A request the handler refuses; ``status_code`` is the HTTP status the caller gets."""

    status_code = 500

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.status_code = type(self).status_code
        self.message = message
        self.phrase = message  # the toolkit's status line reason


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


class NonFiniteOutputError(InferenceError):
    """The model computed NaN or Infinity from finite input: its failure, which JSON cannot carry."""

    status_code = 500


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
    limit = max_body_bytes()
    if len(body) > limit:
        raise PayloadTooLargeError(f"body is {len(body)} bytes; the limit is {limit}")
    content_type = _media_type(request_content_type)
    if content_type not in REQUEST_TYPES:
        raise UnsupportedContentTypeError(
            f"unsupported content type {request_content_type!r}; use {', '.join(REQUEST_TYPES)}"
        )
    if content_type == NPY_CONTENT_TYPE:
        return _checked_count(_npy_instances(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequestError("body is not valid UTF-8") from None
    if not text.strip():
        raise MalformedRequestError("body is empty")
    instances = _json_instances(text) if content_type == JSON_CONTENT_TYPE else _csv_instances(text)
    return _checked_count(instances)


def max_body_bytes() -> int:
    """The container's ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` in bytes (6 MB unless it says otherwise)."""
    raw = os.environ.get(MAX_PAYLOAD_ENV, "").strip()
    try:
        megabytes = float(raw) if raw else DEFAULT_MAX_PAYLOAD_MB
    except ValueError:
        megabytes = DEFAULT_MAX_PAYLOAD_MB  # the model server refuses to start with such a value
    return int(megabytes * 1024 * 1024)


def _checked_count(instances: list[Any]) -> list[Any]:
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
    if not torch.isfinite(output).all():
        raise NonFiniteOutputError(NON_FINITE_OUTPUT)
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


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str | bytes, str]:
    """Encode as the first type ``Accept`` names that this handler writes (JSON by default);
    returns (body, content type) as the SageMaker toolkit accepts."""
    for media_type in [_media_type(part) for part in (accept or "").split(",")]:
        if media_type in {JSON_CONTENT_TYPE, "*/*", "application/*", ""}:
            try:
                return json.dumps(prediction, allow_nan=False), JSON_CONTENT_TYPE
            except ValueError:
                raise NonFiniteOutputError(NON_FINITE_OUTPUT) from None
        if media_type in {CSV_CONTENT_TYPE, "text/*"}:
            return _csv_answer(prediction["predictions"]), CSV_CONTENT_TYPE
        if media_type == NPY_CONTENT_TYPE:
            return _npy_answer(prediction["predictions"]), NPY_CONTENT_TYPE
    raise NotAcceptableError(f"cannot produce {accept!r}; this model answers {', '.join(REQUEST_TYPES)}")


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
        document = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except RecursionError:
        raise MalformedRequestError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN / Infinity, beyond float32
        raise MalformedRequestError(f"malformed JSON: {exc}") from None
    instances = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(instances, list):
        raise MalformedRequestError('expected {"instances": [...]} or a JSON list')
    return instances


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")  # NaN / Infinity are not valid inputs


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not _in_float32_range(value):  # 1e400 parses to inf; 1e39 would become inf in the model
        raise ValueError(f"{literal[:40]} is beyond the float32 range")
    return value


def _bounded_int(literal: str) -> int:
    digits = literal.lstrip("-")
    if len(digits) > _MAX_INT_DIGITS or not _in_float32_range(int(literal)):  # length first: cheap
        raise ValueError(f"{literal[:40]} is beyond the float32 range")
    return int(literal)


def _in_float32_range(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= FLOAT32_MAX


def _csv_instances(text: str) -> list[Any]:
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    try:
        instances = [[float(cell) for cell in row] for row in rows]
    except ValueError:
        raise MalformedRequestError("CSV cells must be numbers") from None
    if any(not _in_float32_range(value) for row in instances for value in row):
        raise MalformedRequestError("NaN, infinite and beyond-float32 values are not allowed")
    return instances


def _npy_instances(body: bytes) -> list[Any]:
    """A ``.npy`` array (never pickled objects) of numbers: one instance per row."""
    import numpy as np  # noqa: PLC0415 - only this content type needs it

    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MalformedRequestError(f"not a valid .npy payload: {exc}") from None
    if array.dtype.kind not in "iuf" or array.ndim == 0:
        raise MalformedRequestError("the .npy payload must hold an array of numbers, one row per instance")
    values = array.astype(np.float64)
    if not (np.isfinite(values) & (np.abs(values) <= FLOAT32_MAX)).all():
        raise MalformedRequestError("NaN, infinite and beyond-float32 values are not allowed")
    instances: list[Any] = values.tolist()
    return instances


def _csv_answer(predictions: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for item in predictions:
        writer.writerow([item["value"]] if "value" in item else [item["label"], item["confidence"]])
    return out.getvalue()


def _npy_answer(predictions: list[dict[str, Any]]) -> bytes:
    """Values as a float32 array; labels and confidences as a structured array (no pickling)."""
    import numpy as np  # noqa: PLC0415

    if predictions and "value" in predictions[0]:
        array = np.asarray([item["value"] for item in predictions], dtype=np.float32)
    else:
        width = max((len(str(item["label"])) for item in predictions), default=1)
        kind = np.dtype([("label", f"<U{width}"), ("confidence", "<f4")])
        array = np.array([(str(item["label"]), item["confidence"]) for item in predictions], dtype=kind)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
