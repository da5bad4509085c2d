"""Half or bfloat16 inference by config: ``MODEL_SERVER_PRECISION`` = float32 | float16 | bfloat16.

Implemented once, around whatever ``predict_fn`` (or ``transform_fn``) serves the artifact: the
default functions, the built-in handler and a team's own ``inference.py`` alike, TorchScript and
``torch.export`` models included. ``torch.autocast`` runs matrix products and convolutions in the
lower precision and keeps precision-sensitive operations (softmax, norms, reductions) in float32;
the weights stay as ``model_fn`` loaded them. Autocast is per thread, so the wrapper enters it on
the model thread, inside the call. Tensors that come out in float16 or bfloat16 go back to float32,
so ``output_fn`` encodes what it always did.

float32 (the default) wraps nothing: the CPU path keeps its per-request cost. On a CPU, bfloat16
is the useful choice (fast where the CPU has AVX512-BF16 or AMX); torch 2.13's CPU autocast also
runs float16, which is fast only on CPUs with native FP16 arithmetic.

The names are importable without torch (the supervisor checks the setting); the wrapper loads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.serving.artifact import InferenceFunctions

PRECISION_VARIABLE = "MODEL_SERVER_PRECISION"
FLOAT32, FLOAT16, BFLOAT16 = "float32", "float16", "bfloat16"
PRECISIONS = (FLOAT32, FLOAT16, BFLOAT16)


class PrecisionError(ValueError):
    """An unknown precision; the message names the variable and the allowed values."""


def check_precision(value: str) -> str:
    """``value`` if it is one of ``PRECISIONS``, else ``PrecisionError``."""
    if value not in PRECISIONS:
        raise PrecisionError(f"{PRECISION_VARIABLE}={value!r} is not one of {', '.join(PRECISIONS)}")
    return value


def with_precision(functions: InferenceFunctions, precision: str, device_type: str) -> InferenceFunctions:
    """``functions`` with ``predict_fn`` (and ``transform_fn``) run under autocast to ``precision``
    on ``device_type`` ("cpu" or "cuda"); unchanged for float32."""
    if check_precision(precision) == FLOAT32:
        return functions
    import torch  # noqa: PLC0415 - only workers pay for torch

    dtype = torch.float16 if precision == FLOAT16 else torch.bfloat16
    lowered = (torch.float16, torch.bfloat16)

    def as_float32(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.float() if value.dtype in lowered else value
        if type(value) is dict:
            return {key: as_float32(item) for key, item in value.items()}
        if type(value) in (list, tuple):
            return type(value)(as_float32(item) for item in value)
        return value

    def autocast(function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            with torch.autocast(device_type, dtype=dtype):
                output = function(*args)
            return as_float32(output)  # half tensors (also in dicts, lists, tuples) back to float32

        return run

    transform = functions.transform_fn
    return dataclasses.replace(
        functions,
        predict_fn=autocast(functions.predict_fn),
        transform_fn=autocast(transform) if transform is not None else None,
    )
