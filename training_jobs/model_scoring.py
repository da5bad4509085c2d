"""The generic evaluator of a model the platform did not train: scored through its serving contract.

A team's training code writes a model folder in the SageMaker PyTorch layout (``code/inference.py``
with any of ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``, or a lone TorchScript
``model.pt``). This scores it on the generic preparer's tabular test split the way the endpoint
will call it: ``{"instances": [[feature, ...], ...]}`` as ``application/json`` (the rows the API
sends), the JSON answer read back. The four functions fall back, as in SageMaker's PyTorch
container, to: load ``model.pt`` with TorchScript; JSON (``instances`` or a bare list) to a float
tensor; ``model(x)``; the output as JSON lists.

An answer (or its ``predictions``) holds one item per row: a class name, ``{"label": ...}``, a
number, ``{"value": ...}``, or a list of class scores (classification: in the sorted order of the
class names, the order the generic preparer's vocabulary uses; regression: the first number).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data_schema import REGRESSION
from .evaluation_report import classification_metrics, regression_metrics

JSON = "application/json"
BATCH_ROWS = 256
TABULAR_SPLIT_FILE = "data.csv"


class ScoringError(ValueError):
    """The model or its answers cannot be scored; the message says which and why."""


@dataclass(frozen=True)
class ServingFunctions:
    model_fn: Callable[[str], Any]
    input_fn: Callable[[Any, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]


def serving_functions(model_dir: Path) -> ServingFunctions:
    """The model's own inference functions from ``code/inference.py``, the defaults for the rest."""
    module: Any = None
    script = model_dir / "code" / "inference.py"
    if script.is_file():
        sys.path.insert(0, str(script.parent))  # what inference.py imports lives beside it
        spec = importlib.util.spec_from_file_location("model_inference", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return ServingFunctions(
        model_fn=getattr(module, "model_fn", _load_torchscript),
        input_fn=getattr(module, "input_fn", _json_tensor),
        predict_fn=getattr(module, "predict_fn", _call_model),
        output_fn=getattr(module, "output_fn", _json_lists),
    )


def score_tabular(model_dir: Path, test_dir: Path, problem: str, classes: Sequence[str]) -> dict[str, float]:
    """Metrics of the model in ``model_dir`` on the test split's ``data.csv`` (features, then target)."""
    features, targets = _read_split(test_dir / TABULAR_SPLIT_FILE)
    functions = serving_functions(model_dir)
    model = functions.model_fn(str(model_dir))
    answers: list[Any] = []
    for start in range(0, len(features), BATCH_ROWS):
        answers += _answer(functions, model, features[start : start + BATCH_ROWS])
    if len(answers) != len(features):
        raise ScoringError(f"the model answered {len(answers)} items for {len(features)} rows")
    if problem == REGRESSION:
        return regression_metrics([float(t) for t in targets], [_value(a) for a in answers])
    names = sorted(set(classes) | set(targets))
    predicted = [class_of(a, names) for a in answers]
    index = {name: i for i, name in enumerate([*names, *sorted(set(predicted) - set(names))])}
    return classification_metrics([index[t] for t in targets], [index[p] for p in predicted])


def _read_split(path: Path) -> tuple[list[list[float]], list[str]]:
    if not path.is_file():
        raise ScoringError(f"no {path.name} in {path.parent}: the generic evaluator reads tabular splits")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    if not rows:
        raise ScoringError(f"{path} holds no rows")
    return [[float(v) for v in row[:-1]] for row in rows], [row[-1] for row in rows]


def _answer(functions: ServingFunctions, model: Any, rows: list[list[float]]) -> list[Any]:
    """One request of ``rows`` through the four functions; the answer's items."""
    data = functions.input_fn(json.dumps({"instances": rows}), JSON)
    output = functions.output_fn(functions.predict_fn(data, model), JSON)
    body = output[0] if isinstance(output, tuple) else output
    document = json.loads(body)
    items = document.get("predictions") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ScoringError('the model\'s answer is neither a list nor {"predictions": [...]}')
    return items


def class_of(item: Any, classes: Sequence[str]) -> str:
    """The class an answer item names (see the module docstring for the forms it may take)."""
    if isinstance(item, dict) and "label" in item:
        item = item["label"]
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and all(isinstance(v, int | float) for v in item):
        best = max(range(len(item)), key=item.__getitem__)
        if best >= len(classes):
            raise ScoringError(f"the model scored {len(item)} classes; the data has {len(classes)}")
        return classes[best]
    if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(classes):
        return classes[item]
    raise ScoringError(f"cannot read a class from the model's answer item {str(item)[:80]}")


def _value(item: Any) -> float:
    if isinstance(item, dict) and "value" in item:
        item = item["value"]
    if isinstance(item, list) and item:
        item = item[0]
    if isinstance(item, int | float) and not isinstance(item, bool):
        return float(item)
    raise ScoringError(f"cannot read a number from the model's answer item {str(item)[:80]}")


def _load_torchscript(model_dir: str) -> Any:
    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise ScoringError("the model has neither code/inference.py with a model_fn nor a model.pt")
    return torch.jit.load(str(path), map_location="cpu").eval()


def _json_tensor(body: Any, _content_type: str) -> torch.Tensor:
    document = json.loads(body)
    rows = document["instances"] if isinstance(document, dict) else document
    return torch.tensor(rows, dtype=torch.float32)


def _call_model(data: Any, model: Any) -> Any:
    with torch.inference_mode():
        return model(data)


def _json_lists(prediction: Any, _accept: str) -> str:
    if isinstance(prediction, torch.Tensor):
        prediction = prediction.detach().cpu().tolist()
    return json.dumps(prediction)
