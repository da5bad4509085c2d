"""handlers/serving/inference.py: the SageMaker PyTorch serving contract and its error statuses."""

from __future__ import annotations

import json

import pytest
import torch

import models
from handlers.common.contracts import MAX_BODY_BYTES
from handlers.serving import inference
from models import save_model
from models.tabular import TabularRegressorConfig
from models.text import TextClassifierConfig
from models.vision import DigitsCNNConfig


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """name -> ServedModel loaded through model_fn from a saved model directory."""
    torch.manual_seed(0)
    configs = {
        "digits-cnn": DigitsCNNConfig(),
        "tabular-mlp": TabularRegressorConfig(num_features=3, target_mean=100.0, target_std=10.0),
        "text-bow": TextClassifierConfig(num_buckets=256),
    }
    result = {}
    for name, config in configs.items():
        directory = tmp_path_factory.mktemp(name)
        save_model(models.build(name, config), directory)
        result[name] = inference.model_fn(str(directory))
    return result


def serve(model, body, content_type="application/json", accept="application/json"):
    return inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model), accept)


def test_classifier_answers_label_and_confidence(served):
    # GIVEN the text classifier WHEN two texts are sent as {"instances": [...]}
    request = json.dumps({"instances": ["free cash", "see you at lunch"]})
    body, content_type = serve(served["text-bow"], request)
    # THEN each gets a known label and a probability, as JSON
    predictions = json.loads(body)["predictions"]
    assert content_type == "application/json"
    assert [p["label"] in {"ham", "spam"} for p in predictions] == [True, True]
    assert all(0.5 <= p["confidence"] <= 1.0 for p in predictions)


@pytest.mark.parametrize("content_type", ["text/csv", "TEXT/CSV; charset=utf-8"])
def test_regressor_accepts_csv_rows(served, content_type):
    # GIVEN CSV rows of three features (header-less, any casing of the media type)
    body, _ = serve(served["tabular-mlp"], b"1,2,3\n4,5,6\n", content_type)
    # THEN one value per row comes back
    assert [set(p) for p in json.loads(body)["predictions"]] == [{"value"}, {"value"}]


def test_image_accepts_nested_8x8_lists(served):
    # GIVEN one image as 8 rows of 8 pixels
    body, _ = serve(served["digits-cnn"], json.dumps([[[0] * 8] * 8]))
    # THEN one of the ten digit labels is predicted
    assert json.loads(body)["predictions"][0]["label"] in [str(d) for d in range(10)]


@pytest.mark.parametrize(
    ("model", "body", "content_type", "status"),
    [
        ("text-bow", b'["hi"]', "text/plain", 415),
        ("text-bow", b'["hi"]', None, 415),
        ("text-bow", b"{not json", "application/json", 400),
        ("text-bow", b"", "application/json", 400),
        ("text-bow", b"\xff\xfe", "application/json", 400),
        ("text-bow", b'{"rows": []}', "application/json", 400),
        ("text-bow", b"[]", "application/json", 400),
        ("tabular-mlp", b"[[1, NaN, 3]]", "application/json", 400),
        ("tabular-mlp", b"[[1, 1e400, 3]]", "application/json", 400),
        ("tabular-mlp", b"1,inf,3", "text/csv", 400),
        ("tabular-mlp", b"1,two,3", "text/csv", 400),
        ("tabular-mlp", b"[[1, 2]]", "application/json", 422),
        ("tabular-mlp", b"1,2,3,4", "text/csv", 422),
        ("digits-cnn", b"[[1, 2, 3]]", "application/json", 422),
        ("text-bow", b"[[1, 2]]", "application/json", 422),
        ("text-bow", b"[" + b'"a",' * 1000 + b'"a"]', "application/json", 413),
        ("text-bow", b'["' + b"a" * (MAX_BODY_BYTES + 1) + b'"]', "application/json", 413),
    ],
)
def test_bad_requests_get_their_http_status(served, model, body, content_type, status):
    # GIVEN a request the handler must refuse
    # WHEN it goes through input_fn and predict_fn
    with pytest.raises(inference.InferenceError) as caught:
        serve(served[model], body, content_type)
    # THEN the error carries the status the caller should get, and the mapping agrees
    assert caught.value.status_code == status
    expected = {"error": caught.value.message, "status": status}
    assert inference.error_response(caught.value) == (status, expected)


def test_unacceptable_accept_header_is_406(served):
    # GIVEN a caller that only accepts XML WHEN answered THEN 406, not a JSON body it cannot read
    with pytest.raises(inference.NotAcceptableError):
        serve(served["text-bow"], b'["hi"]', accept="application/xml")


def test_unexpected_errors_become_500_with_request_id_and_no_trace():
    # GIVEN an exception that is not ours
    status, body = inference.error_response(RuntimeError("secret /opt/ml/model path"))
    # THEN the caller gets 500 and a request id, never the message or a stack trace
    assert status == 500
    assert len(body["request_id"]) == 32
    assert "secret" not in json.dumps(body)


def test_handler_defines_the_four_functions_and_no_transform_fn():
    # GIVEN the handler module WHEN inspected THEN it follows the four-function contract only
    for name in ("model_fn", "input_fn", "predict_fn", "output_fn"):
        assert callable(getattr(inference, name))
    assert not hasattr(inference, "transform_fn")
