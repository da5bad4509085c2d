"""The sample request a trained model carries (code/sample-request.json): every architecture's
built-in handler answers it, training writes it, and the model server reads it under the same name."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from handlers.common import contracts
from handlers.serving import inference
from models import build, get, names, save_model
from training_jobs import package, sample_request


def test_training_writes_it_under_the_name_the_model_server_reads() -> None:
    # The training container ships without handlers/: it names the file itself.
    assert sample_request.SAMPLE_REQUEST_FILE == contracts.SAMPLE_REQUEST_FILE


@pytest.mark.parametrize("architecture", names())
def test_the_built_in_handler_answers_every_architectures_sample_request(
    architecture: str, tmp_path: Path
) -> None:
    # GIVEN a model of the architecture, saved by the platform's persistence
    save_model(build(architecture, get(architecture).config_cls()), tmp_path)
    # WHEN its sample request goes through the handler the archive ships
    body = sample_request.sample_request(tmp_path)
    served = inference.model_fn(str(tmp_path))
    answer, content_type = inference.output_fn(
        inference.predict_fn(inference.input_fn(body, "application/json"), served), "application/json"
    )
    # THEN it is answered with one prediction
    assert content_type == "application/json"
    assert len(json.loads(answer)["predictions"]) == 1


def test_the_tabular_sample_is_the_training_mean(tmp_path: Path) -> None:
    config = get("tabular-mlp").config_cls(
        num_features=3, feature_mean=[1.5, 20.0, -4.0], feature_std=[1, 2, 3]
    )
    save_model(build("tabular-mlp", config), tmp_path)
    assert json.loads(sample_request.sample_request(tmp_path)) == {"instances": [[1.5, 20.0, -4.0]]}


@pytest.mark.parametrize("task", ["digits", "diabetes", "spam"])
def test_training_and_packaging_ship_the_trained_models_sample_request(
    trained, task: str, tmp_path: Path
) -> None:
    # GIVEN a model trained by the training job (whose folder SageMaker tars as the artifact)
    model_dir = trained(task).model_dir
    expected = sample_request.sample_request(model_dir)
    # THEN the folder holds its sample request, and so does the packager's model.tar.gz
    assert (model_dir / contracts.SAMPLE_REQUEST_FILE).read_bytes() == expected
    archive = package.build_model_archive(model_dir, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as packed:
        assert packed.extractfile(contracts.SAMPLE_REQUEST_FILE).read() == expected  # type: ignore[union-attr]


def test_a_folder_without_a_saved_model_gets_no_sample_request(tmp_path: Path) -> None:
    assert sample_request.write_sample_request(tmp_path) is None
    assert not (tmp_path / contracts.SAMPLE_REQUEST_FILE).exists()
