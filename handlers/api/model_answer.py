"""The model's answer -> the API's 200 body (docs/api.md, "Responses").

Any JSON the model gives is passed on; only two things are refused, as ``bad_model_response`` (502):
an answer that is not JSON, and one holding numbers JSON cannot carry (NaN, Infinity, or literals
that overflow to them). With an input schema, an answer in the built-in shape
(``{"predictions": [...], "confidence": [...]}`` or the per-item ``{"label", "confidence"}``
form, one entry per instance) becomes the documented prediction body; any other answer, and every
answer of a model without a schema, is the model's JSON unchanged, with ``model_version`` and
``request_id`` added to an object that lacks them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from handlers.api.errors import ModelResponseError

MODEL_VERSION_KEY = "model_version"
REQUEST_ID_KEY = "request_id"


@dataclass(frozen=True)
class BuiltInAnswer:
    """An answer in the built-in shape, one prediction (and confidence) per instance."""

    predictions: list[Any]
    confidence: list[float | None]
    model_version: str | None  # what the container says it is (its MODEL_VERSION), if it says


def decode_answer(payload: bytes, content_type: str | None) -> Any:
    """The model's answer as JSON; ``ModelResponseError`` when it is not JSON or not finite."""
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ModelResponseError(f"the model endpoint answered {media_type or 'no media type'}, not JSON")
    try:
        return json.loads(payload, parse_constant=_non_finite, parse_float=_finite_float)
    except RecursionError:
        raise ModelResponseError("the model endpoint's answer is nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, NaN / Infinity / 1e400
        raise ModelResponseError(f"the model endpoint did not answer valid JSON: {_reason(exc)}") from None


def built_in_answer(document: Any, expected: int) -> BuiltInAnswer | None:
    """``document`` read as the built-in shape for ``expected`` instances, or None if it is not one."""
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list) or len(predictions) != expected:
        return None
    confidence = document.get("confidence")
    if confidence is None and predictions and all(_is_item(p) for p in predictions):
        confidence = [p.get("confidence") for p in predictions]
        predictions = [p.get("label", p.get("value")) for p in predictions]
    if confidence is None:
        confidence = [None] * expected
    if not isinstance(confidence, list) or len(confidence) != expected or not all(map(_is_score, confidence)):
        return None
    version = document.get(MODEL_VERSION_KEY)
    return BuiltInAnswer(predictions, confidence, str(version) if isinstance(version, str | int) else None)


def with_identity(document: Any, model_version: str, request_id: str) -> Any:
    """The model's answer unchanged, plus ``model_version`` and ``request_id`` where an object lacks
    them (a list or a scalar has no place for them: the response headers carry both)."""
    if not isinstance(document, dict):
        return document
    return {MODEL_VERSION_KEY: model_version, REQUEST_ID_KEY: request_id, **document}


def _is_item(prediction: Any) -> bool:
    return isinstance(prediction, dict) and ("label" in prediction or "value" in prediction)


def _is_score(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _non_finite(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal[:20]} overflows")
    return value


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]
