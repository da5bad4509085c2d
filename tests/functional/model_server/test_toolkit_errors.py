"""The built-in handler inside the SageMaker PyTorch container's own inference toolkit (the
``sagemaker-dlc`` choice): its refusals keep their 4xx status there, a valid request is answered,
and only an unexpected failure is the toolkit's 500."""

from __future__ import annotations

import json
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sagemaker_inference.transformer import Transformer
from sagemaker_pytorch_serving_container.default_pytorch_inference_handler import (
    DefaultPytorchInferenceHandler,
)

from training_jobs import package

from .conftest import DIGIT


@dataclass
class _Request:
    headers: dict[str, str]

    def get_request_properties(self) -> dict[str, str]:
        return self.headers


@dataclass
class ToolkitContext:
    """What TorchServe hands the toolkit per request: the model folder, headers, and where the
    response status and content type go."""

    model_dir: str
    headers: dict[str, str]
    model_name: str = "model"
    status: tuple[int, str] | None = None
    content_types: dict[int, str] = field(default_factory=dict)

    @property
    def system_properties(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "gpu_id": None}

    @property
    def request_processor(self) -> list[_Request]:
        return [_Request(self.headers)]

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)

    def set_response_content_type(self, index: int, content_type: str) -> None:
        self.content_types[index] = content_type


@pytest.fixture(scope="module")
def dlc_model_dir(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model's archive from its real packager, extracted as the container does."""
    archive = package.build_model_archive(trained_model_dir, tmp_path_factory.mktemp("dlc") / "model.tar.gz")
    root = archive.parent / "model"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture
def transformer(dlc_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Transformer:
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "inference.py")
    monkeypatch.syspath_prepend(str(dlc_model_dir / "code"))
    monkeypatch.delitem(sys.modules, "inference", raising=False)
    return Transformer(default_inference_handler=DefaultPytorchInferenceHandler())


def _transform(transformer: Transformer, model_dir: Path, body: bytes, **headers: str) -> ToolkitContext:
    context = ToolkitContext(str(model_dir), {"Content-Type": "application/json", **headers})
    context.answer = transformer.transform([{"body": body}], context)  # type: ignore[attr-defined]
    return context


def test_a_valid_request_is_answered_inside_the_toolkit(transformer, dlc_model_dir):
    context = _transform(transformer, dlc_model_dir, json.dumps({"instances": [DIGIT]}).encode())
    assert context.status is None  # the toolkit sets a status only for errors
    assert json.loads(context.answer[0])["predictions"][0]["label"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        pytest.param(b"{not json", {}, 400, id="malformed-json"),
        pytest.param(b"[" * 5000 + b"]" * 5000, {}, 400, id="nested-5000-deep"),
        pytest.param(json.dumps([DIGIT[:-1] + [int("9" * 401)]]).encode(), {}, 400, id="401-digit-integer"),
        pytest.param(json.dumps([[1.0, 2.0]]).encode(), {}, 422, id="wrong-shape"),
        pytest.param(b"1,2", {"Content-Type": "application/xml"}, 415, id="wrong-content-type"),
        pytest.param(json.dumps([DIGIT] * 1001).encode(), {}, 413, id="too-many-instances"),
        pytest.param(json.dumps([DIGIT]).encode(), {"Accept": "image/png"}, 406, id="not-acceptable"),
    ],
)
def test_client_mistakes_keep_their_4xx_inside_the_toolkit(transformer, dlc_model_dir, body, headers, status):
    # GIVEN the toolkit's own transformer running the shipped code/inference.py
    # WHEN a client mistake arrives THEN the toolkit answers its 4xx, not its generic 500
    context = _transform(transformer, dlc_model_dir, body, **headers)
    assert context.status is not None
    assert context.status[0] == status
