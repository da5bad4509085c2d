"""The input-schema.json a training run writes: the API's parser accepts it, and an instance it
accepts is one the trained architecture can encode (the API and the model agree on shapes)."""

from __future__ import annotations

import base64
import json

import pytest
import torch
from pydantic import BaseModel

from handlers.common.input_schema import parse_input_schema
from models import architectures
from training_jobs.input_contract import INPUT_SCHEMA_FILE, input_schema_document, write_input_schema
from training_jobs.tasks import TASKS

VALID_INSTANCE = {
    "digits": {"b64": base64.b64encode(bytes(range(16)) * 4).decode()},
    "diabetes": [0.01] * len(TASKS["diabetes"].feature_names),
    "spam": {"text": "win a free prize now"},
}


def _model(task_name: str) -> object:
    spec = architectures.get(TASKS[task_name].model_name)
    return spec.model_cls(spec.config_cls())


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_the_schema_of_each_task_is_valid_and_fits_its_model(task_name, tmp_path):
    task, model = TASKS[task_name], _model(task_name)
    # GIVEN the schema file a training run of the task writes
    path = write_input_schema(tmp_path, task, model)
    assert path.name == INPUT_SCHEMA_FILE
    schema = parse_input_schema(path.read_text(), str(path))
    # WHEN the API validates a well-formed instance and turns it into the endpoint's input
    instance: BaseModel = schema.instance_model().model_validate(VALID_INSTANCE[task_name])
    endpoint_input = schema.to_endpoint(instance)
    # THEN the model encodes it and answers one row for it
    with torch.no_grad():
        output = model(*model.encode([endpoint_input]))
    assert output.shape[0] == 1


def test_the_image_schema_carries_the_architectures_own_limits():
    document = input_schema_document(TASKS["digits"], _model("digits"))
    assert document == {"kind": "image", "height": 8, "width": 8, "channels": 1, "max_value": 16}


def test_the_tabular_schema_leaves_scaling_to_the_model():
    # The tabular model standardises inside itself: the API must not scale the features again.
    document = json.loads(json.dumps(input_schema_document(TASKS["diabetes"], _model("diabetes"))))
    assert document["feature_names"] == list(TASKS["diabetes"].feature_names)
    assert "means" not in document and "stds" not in document
