"""Half / bfloat16 inference around any predict_fn, and inputs moved to a GPU through pinned memory."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from handlers.serving import artifact, inference
from handlers.serving.artifact import InferenceFunctions, load_inference_functions
from handlers.serving.precision import PrecisionError, check_precision, with_precision
from models import build, get, save_model

ROWS = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))

TEAM_INFERENCE = textwrap.dedent(
    """
    import torch


    def model_fn(model_dir):
        torch.manual_seed(5)
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()


    def predict_fn(data, model):
        with torch.inference_mode():
            out = model(data)
        return {"scores": out, "parts": [out[:, :2], out[:, 2:]]}
    """
)


def torchscript_artifact(root: Path) -> Path:
    torch.manual_seed(4)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()
    torch.jit.save(torch.jit.script(mlp), str(root / "model.pt"))
    return root


def team_artifact(root: Path) -> Path:
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(TEAM_INFERENCE)
    return root


def tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors(item)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in tensors(item)]
    return []


def predictions(model_dir: Path, precision: str) -> Any:
    sys.modules.pop("inference", None)
    functions = with_precision(load_inference_functions(model_dir), precision, "cpu")
    model = functions.model_fn(str(model_dir))
    return functions.predict_fn(ROWS, model)


@pytest.mark.parametrize(
    "make", [torchscript_artifact, team_artifact], ids=["default-functions", "team-code"]
)
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_lower_precision_answers_close_to_float32_and_comes_back_as_float32(
    tmp_path: Path, make: Any, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an artifact served by the default functions, or by a team's own predict_fn
    model_dir = make(tmp_path)
    monkeypatch.delitem(sys.modules, "inference", raising=False)  # another artifact's module of that name
    full = tensors(predictions(model_dir, "float32"))
    # WHEN it runs under the lower precision (on the CPU: torch 2.13's autocast takes both)
    lowered = tensors(predictions(model_dir, precision))
    # THEN every output tensor is float32 again, close to float32's answer but computed differently
    assert [t.dtype for t in lowered] == [torch.float32] * len(full)
    for low, high in zip(lowered, full, strict=True):
        torch.testing.assert_close(low, high, atol=0.05, rtol=0.05)
    assert not all(torch.equal(low, high) for low, high in zip(lowered, full, strict=True))


def test_the_built_in_handler_runs_under_bfloat16(tmp_path: Path) -> None:
    # GIVEN a digits model saved by the platform's persistence, served by the built-in handler
    torch.manual_seed(2)
    save_model(build("digits-cnn", get("digits-cnn").config_cls()), tmp_path)
    handler = InferenceFunctions(
        model_fn=inference.model_fn,
        input_fn=inference.input_fn,
        predict_fn=inference.predict_fn,
        output_fn=inference.output_fn,
        transform_fn=None,
        user_functions=("input_fn", "model_fn", "output_fn", "predict_fn"),
        module_file=inference.__file__,
    )
    model = handler.model_fn(str(tmp_path))
    images = (torch.rand(6, 64, generator=torch.Generator().manual_seed(9)) * 16).tolist()
    # WHEN it answers under float32 and under bfloat16
    full = handler.predict_fn(images, model)["predictions"]
    lowered = with_precision(handler, "bfloat16", "cpu").predict_fn(images, model)["predictions"]
    # THEN the labels and confidences agree closely
    assert [p["label"] for p in lowered] == [p["label"] for p in full]
    for low, high in zip(lowered, full, strict=True):
        assert low["confidence"] == pytest.approx(high["confidence"], abs=0.02)


def test_float32_wraps_nothing(tmp_path: Path) -> None:
    functions = load_inference_functions(torchscript_artifact(tmp_path))
    assert with_precision(functions, "float32", "cpu") is functions


def test_an_unknown_precision_names_the_variable_and_the_allowed_values() -> None:
    with pytest.raises(
        PrecisionError, match=r"MODEL_SERVER_PRECISION='half' is not one of float32, float16, bfloat16"
    ):
        check_precision("half")


# --- moving inputs --------------------------------------------------------------------------------


class RecordingTensor:
    """Stands in for a CPU tensor bound for a GPU (none here): records how it is moved."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.calls: list[tuple[str, Any]] = []

    def pin_memory(self) -> RecordingTensor:
        self.calls.append(("pin_memory", None))
        return self

    def to(self, device: torch.device, non_blocking: bool = False) -> RecordingTensor:
        self.calls.append(("to", (str(device), non_blocking)))
        return self


@pytest.mark.parametrize("move", [artifact.to_device, inference._to_device], ids=["default", "built-in"])
def test_inputs_for_a_gpu_go_through_pinned_memory_without_blocking(move: Any) -> None:
    tensor = RecordingTensor()
    move(tensor, torch.device("cuda"))
    assert tensor.calls == [("pin_memory", None), ("to", ("cuda", True))]


@pytest.mark.parametrize("move", [artifact.to_device, inference._to_device], ids=["default", "built-in"])
def test_on_the_cpu_inputs_are_neither_copied_nor_pinned(move: Any) -> None:
    tensor = torch.ones(2, 3)
    moved = move(tensor, torch.device("cpu"))
    assert moved is tensor
    assert not moved.is_pinned()
