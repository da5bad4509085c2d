"""The model server's view of an artifact: the four SageMaker PyTorch functions, user or default.

An artifact in the SageMaker PyTorch layout holds weights at its root and ``code/inference.py``
(plus whatever it imports, e.g. ``code/models/``). Loading follows the SageMaker inference
toolkit (``sagemaker_inference/transformer.py``): ``code/`` goes on ``sys.path``, the module
named by ``SAGEMAKER_PROGRAM`` (default ``inference.py``) is imported, and each of ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn`` it does not define falls back to the PyTorch
toolkit's default (``default_pytorch_inference_handler.py``). A ``transform_fn`` replaces the
last three and may not be defined beside them. A function may take one extra trailing
``context`` argument, as in the toolkit; it receives ``None`` here.

The default ``model_fn`` loads a TorchScript file (``model.pt``, as the toolkit does) and, beyond
the toolkit, a ``torch.export`` program (``model.pt2``, ``torch.export.save``): export it with a
dynamic batch dimension, since the server batches concurrent requests into one forward pass.

Errors carry their HTTP status (``status_code``) and a ``message`` safe to show the caller.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import logging
import math
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # a C JSON codec: ~9x faster than json.loads on rows of floats (docs/serving-benchmark.md)
    import orjson

    _json_loads: Callable[[bytes | str], Any] = orjson.loads

    def _json_dumps(document: Any) -> bytes:
        return orjson.dumps(document)

except ImportError:  # pragma: no cover - orjson ships with the serve extra
    _json_loads = json.loads

    def _json_dumps(document: Any) -> bytes:
        return json.dumps(document).encode()


logger = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"  # as the toolkit takes it: a scipy.sparse matrix (save_npz), or one array
_SPARSE_KEYS = frozenset({"format", "shape", "data", "indices", "indptr"})
MAX_DECODED_BYTES = 64 * 1024 * 1024  # what a compressed .npz body may expand to
UTF8_TYPES = frozenset({JSON, CSV})
DEFAULT_PROGRAM = "inference.py"
CODE_DIR = "code"
DEFAULT_MODEL_FILE = "model.pt"
EXPORTED_SUFFIX = ".pt2"  # a torch.export program (torch.export.save)
DEFAULT_EXPORTED_FILE = f"model{EXPORTED_SUFFIX}"
DEFAULT_MODEL_SUFFIXES = frozenset({".pt", ".pth", EXPORTED_SUFFIX})
_SHAPE_PROBLEM = re.compile(r"shape|size|dimension|mat1 and mat2|\b\d+D\b", re.IGNORECASE)


class ServingError(Exception):
    """An answer the server gives on purpose: ``status_code`` and a ``message`` safe to show."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ServingError):
    status_code = 400
    code = "invalid_request"


class NotAcceptableError(ServingError):
    status_code = 406
    code = "not_acceptable"


class PayloadTooLargeError(ServingError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServingError):
    status_code = 415
    code = "unsupported_media_type"


class WrongShapeError(ServingError):
    status_code = 422
    code = "unprocessable_input"


class ModelOutputError(ServingError):
    """The model produced what JSON cannot carry (NaN, Infinity): the model's fault, not the caller's."""

    status_code = 500
    code = "bad_model_output"


class ModelNotReadyError(ServingError):
    status_code = 503
    code = "model_not_ready"


class RequestTimeoutError(ServingError):
    status_code = 504
    code = "timeout"


class ModelLoadError(Exception):
    """The artifact cannot be served (missing files, not TorchScript, conflicting functions)."""


@dataclass(frozen=True)
class InferenceFunctions:
    """The functions that serve one artifact, each already adapted to its positional arguments."""

    model_fn: Callable[[str], Any]
    input_fn: Callable[[Any, str | None], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    transform_fn: Callable[[Any, Any, str | None, str], Any] | None
    user_functions: tuple[str, ...]
    module_file: str | None


def load_inference_functions(model_dir: Path, program: str = DEFAULT_PROGRAM) -> InferenceFunctions:
    """Import ``model_dir/code/<program>`` as the container does and fill in the defaults.

    Parameters: ``model_dir`` the extracted artifact; ``program`` the ``SAGEMAKER_PROGRAM`` value.
    Returns: the ``InferenceFunctions``. Raises ``ModelLoadError`` for ``transform_fn`` beside the others.
    """
    module_name = program[:-3] if program.endswith(".py") else program
    code_dir = model_dir / CODE_DIR
    module: Any = None
    if (code_dir / f"{module_name}.py").is_file():
        if str(code_dir) not in sys.path:
            sys.path.insert(0, str(code_dir))
        module = importlib.import_module(module_name)
    found = {
        name: getattr(module, name)
        for name in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
        if module is not None and callable(getattr(module, name, None))
    }
    transform = found.get("transform_fn")
    if transform is not None and {"input_fn", "predict_fn", "output_fn"} & set(found):
        raise ModelLoadError(
            "transform_fn cannot be combined with input_fn, predict_fn or output_fn (SageMaker toolkit rule)"
        )
    return InferenceFunctions(
        model_fn=_adapt(found.get("model_fn", default_model_fn), 1),
        input_fn=_adapt(found.get("input_fn", default_input_fn), 2),
        predict_fn=_adapt(found.get("predict_fn", default_predict_fn), 2),
        output_fn=_adapt(found.get("output_fn", default_output_fn), 2),
        transform_fn=_adapt(transform, 4) if transform is not None else None,
        user_functions=tuple(sorted(found)),
        module_file=getattr(module, "__file__", None),
    )


def _adapt(function: Callable[..., Any], arity: int) -> Callable[..., Any]:
    """The toolkit calls an inference function with its arguments, plus ``context`` if it takes one more."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: call them plainly
        return function
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == arity + 1 and not any(p.kind == p.VAR_POSITIONAL for p in parameters):

        def with_context(*args: Any) -> Any:
            return function(*args, None)

        return with_context
    return function


# --- defaults: the SageMaker PyTorch toolkit's behaviour, with clear errors ---------------------------


def model_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_model_fn(model_dir: str) -> Any:
    """A TorchScript ``model.pt`` or ``torch.export`` program ``model.pt2``, else the one
    ``.pt``/``.pth``/``.pt2`` file, loaded on the best device."""
    path = default_model_file(Path(model_dir))
    device = model_device()
    load = _load_exported if path.suffix == EXPORTED_SUFFIX else _load_torchscript
    model = load(path, device)
    logger.info("loaded %s on %s", path.name, device)
    return model


def default_model_file(root: Path) -> Path:
    """The file the default ``model_fn`` loads; ``ModelLoadError`` when there is not exactly one."""
    for name in (DEFAULT_MODEL_FILE, DEFAULT_EXPORTED_FILE):
        if (root / name).is_file():
            return root / name
    candidates = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in DEFAULT_MODEL_SUFFIXES)
    if len(candidates) != 1:
        names = [p.name for p in candidates]
        raise ModelLoadError(f"the default model_fn needs exactly one .pt, .pth or .pt2 file; found {names}")
    return candidates[0]


def _load_torchscript(path: Path, device: torch.device) -> Any:
    try:
        model = torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{path.name} is not a TorchScript model; save it with torch.jit.save (or torch.export.save "
            "as a .pt2 file) or define model_fn in code/inference.py"
        ) from exc
    model.eval()
    return model


def _load_exported(path: Path, device: torch.device) -> Any:
    """A ``torch.export`` program as a callable module (exported programs have no eval mode to set)."""
    try:
        program = torch.export.load(str(path))
    except (RuntimeError, ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(
            f"{path.name} is not a torch.export program; save it with torch.export.save or define "
            "model_fn in code/inference.py"
        ) from exc
    return program.module().to(device)


def default_input_fn(body: Any, content_type: str | None) -> torch.Tensor:
    """JSON (nested lists), CSV (one row per line) or NPY -> a float tensor on the CPU."""
    media_type = media_type_of(content_type)
    if media_type in (NPY, NPZ):
        raw = bytes(body) if isinstance(body, bytes | bytearray) else str(body).encode()
        return torch.from_numpy(_npy_array(raw) if media_type == NPY else _npz_array(raw))
    if media_type not in UTF8_TYPES:
        raise UnsupportedMediaTypeError(
            f"unsupported content type {content_type!r}; use {JSON}, {CSV}, {NPY} or {NPZ}"
        )
    text = body if isinstance(body, str) else _utf8(bytes(body))
    if not text.strip():
        raise BadRequestError("body is empty")
    rows = _json_numbers(body) if media_type == JSON else _csv_numbers(text)
    try:
        parsed = np.asarray(rows)
    except (ValueError, TypeError):
        parsed = np.asarray([], dtype=object)  # ragged
    if parsed.dtype.kind not in "iuf":  # strings, null, booleans, ragged lists
        raise BadRequestError("expected numbers in a rectangular (nested) list")
    with np.errstate(over="ignore"):
        array = parsed.astype(np.float32)
    if array.size == 0:
        raise BadRequestError("no values in the request")
    if not np.isfinite(array).all():  # NaN, Infinity, 1e400, or beyond float32
        raise BadRequestError("NaN and infinite values are not allowed")
    return torch.from_numpy(array)


def default_predict_fn(data: Any, model: Any) -> Any:
    """``model(data)`` under ``inference_mode`` on the model's device."""
    device = _device_of(model)
    inputs = to_device(data, device) if isinstance(data, torch.Tensor) else data
    try:
        with torch.inference_mode():
            return model(inputs)
    except RuntimeError as exc:
        if isinstance(inputs, torch.Tensor) and _SHAPE_PROBLEM.search(str(exc)):
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            logger.info("model refused input of shape %s: %s", list(inputs.shape), detail)
            raise WrongShapeError(f"input of shape {list(inputs.shape)} does not fit the model") from None
        raise


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """The prediction as JSON lists (or CSV / NPY when asked for); returns (body, content type)."""
    if isinstance(prediction, torch.Tensor):
        prediction = prediction.detach().cpu().numpy()
    _check_finite(prediction)
    for media_type in accepted_media_types(accept):
        if media_type in {JSON, "*/*", "application/*"}:
            return _json_dumps(_plain(prediction)), JSON
        if media_type in {CSV, "text/*"}:
            out = io.StringIO()
            np.savetxt(out, np.atleast_1d(np.asarray(prediction)), delimiter=",", fmt="%s")
            return out.getvalue().encode(), CSV
        if media_type == NPY:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(prediction), allow_pickle=False)
            return buffer.getvalue(), NPY
    raise NotAcceptableError(f"cannot produce {accept!r}; this model answers {JSON}, {CSV} or {NPY}")


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; a CPU tensor bound for a GPU goes through pinned host memory, so the
    copy is one DMA transfer that does not block this thread (the forward pass queues behind it on
    the same stream). On the CPU nothing changes: ``.to`` returns the tensor itself."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# --- helpers ----------------------------------------------------------------------------------------


def media_type_of(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def accepted_media_types(accept: str | None) -> list[str]:
    return [media_type_of(part) for part in (accept or "").split(",") if part.strip()]


def _device_of(model: Any) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            return torch.device(parameter.device)
    return torch.device("cpu")


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("body is not valid UTF-8") from None


def _json_numbers(body: bytes | str) -> Any:
    try:  # non-finite values are refused after conversion (a parse_float hook costs a call per number)
        document = _json_loads(body if isinstance(body, str) else bytes(body))
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise BadRequestError(f"malformed JSON: {exc}") from None
    if isinstance(document, dict) and "instances" in document:
        document = document["instances"]
    if not isinstance(document, list | int | float) or isinstance(document, bool):
        raise BadRequestError('expected a JSON list of numbers (or {"instances": [...]})')
    return document


def _csv_numbers(text: str) -> list[list[float]]:
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    try:
        values = [[float(cell) for cell in row] for row in rows]
    except ValueError:
        raise BadRequestError("CSV cells must be numbers") from None
    if any(not math.isfinite(value) for row in values for value in row):
        raise BadRequestError("NaN and infinite values are not allowed")
    return values


def _npy_array(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadRequestError(f"not a valid .npy payload: {exc}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise BadRequestError("the .npy payload must hold a numeric array")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequestError("NaN and infinite values are not allowed")
    return array


def _npz_array(body: bytes) -> np.ndarray:
    """A ``.npz`` body: a scipy.sparse CSR/CSC matrix (``scipy.sparse.save_npz``, what the SageMaker
    toolkit takes) made dense, or the one array it holds."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            if sum(member.file_size for member in archive.infolist()) > MAX_DECODED_BYTES:
                raise PayloadTooLargeError(f"the .npz payload expands beyond {MAX_DECODED_BYTES} bytes")
        with np.load(io.BytesIO(body), allow_pickle=False) as loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadRequestError(f"not a valid .npz payload: {exc}") from None
    if _SPARSE_KEYS <= set(arrays):
        array = _dense(arrays)
    elif len(arrays) == 1:
        (array,) = arrays.values()
    else:
        raise BadRequestError("the .npz payload must hold one array or a scipy.sparse CSR/CSC matrix")
    if array.dtype.kind not in "biuf":
        raise BadRequestError("the .npz payload must hold numbers")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequestError("NaN and infinite values are not allowed")
    return array


def _dense(arrays: dict[str, np.ndarray]) -> np.ndarray:
    layout = arrays["format"].item()
    layout = layout.decode() if isinstance(layout, bytes) else str(layout)
    shape = tuple(int(n) for n in arrays["shape"])
    if layout not in ("csr", "csc") or len(shape) != 2 or min(shape) < 0:
        raise BadRequestError(f"sparse format {layout!r} is not supported; send csr or csc")
    if shape[0] * shape[1] * arrays["data"].dtype.itemsize > MAX_DECODED_BYTES:
        raise PayloadTooLargeError(f"the sparse matrix {shape} is too large to serve densely")
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    outer = shape[0] if layout == "csr" else shape[1]
    if len(indptr) != outer + 1 or indptr[-1] != len(data) or len(indices) != len(data):
        raise BadRequestError("the sparse matrix's index arrays do not fit its shape")
    dense = np.zeros(shape, dtype=data.dtype)
    try:
        lines = np.repeat(np.arange(outer), np.diff(indptr))  # ValueError: indptr not ascending
        if layout == "csr":
            dense[lines, indices] = data
        else:
            dense[indices, lines] = data
    except (ValueError, IndexError):
        raise BadRequestError("the sparse matrix's indices do not fit its shape") from None
    return dense


def _check_finite(prediction: Any) -> None:
    """orjson writes NaN as null, json as NaN: a non-finite output is the model's failure (a 500)."""
    if isinstance(prediction, np.ndarray | np.generic) and prediction.dtype.kind in "fc":
        if not np.isfinite(prediction).all():
            raise ModelOutputError("the model produced a non-finite value (NaN or Infinity)")


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
