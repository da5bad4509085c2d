"""The input schema: its own validation, and the instance checks it gives the API and the batch job."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import (
    ImageInputSchema,
    TabularInputSchema,
    TextInputSchema,
    field_problems,
    instance_model_for,
    load_input_schema,
    parse_input_schema,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  hello   world \n", "hello world"),
        ("tab\tand\u00a0nbsp", "tab and nbsp"),
        ("cafe\u0301", "caf\u00e9"),  # NFC: e + combining accent becomes one character
    ],
)
def test_text_is_normalised(raw: str, clean: str) -> None:
    # GIVEN a text schema WHEN an instance is validated THEN the text is stripped, collapsed, NFC
    model = instance_model_for(TextInputSchema(kind="text", max_chars=100))
    assert model.model_validate({"text": raw}).text == clean  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["", " \n\t ", "x" * 11, "lone \ud800 surrogate"])
def test_text_that_is_empty_too_long_or_not_unicode_is_refused(text: str) -> None:
    model = instance_model_for(TextInputSchema(kind="text", max_chars=10))
    with pytest.raises(ValidationError) as caught:
        model.model_validate({"text": text})
    assert field_problems(caught.value)[0].field == "text"


def test_tabular_lists_and_objects_are_the_same_instance_and_scaled() -> None:
    # GIVEN a schema with training statistics
    schema = TabularInputSchema(kind="tabular", feature_names=("a", "b"), means=(1.0, 2.0), stds=(2.0, 4.0))
    model = instance_model_for(schema)
    # WHEN the same instance is given both ways
    by_name = schema.to_endpoint(model.model_validate({"b": 10, "a": 5}))
    in_order = schema.to_endpoint(model.model_validate([5, 10]))
    # THEN both are scaled in schema order
    assert by_name == in_order == [2.0, 2.0]


def test_tabular_without_statistics_sends_raw_values() -> None:
    schema = TabularInputSchema(kind="tabular", feature_names=("a", "b"))
    assert schema.to_endpoint(instance_model_for(schema).model_validate([5, 10])) == [5.0, 10.0]


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "tabular", "feature_names": ["a", "a"]},
        {"kind": "tabular", "feature_names": ["a"], "means": [0.0]},
        {"kind": "tabular", "feature_names": ["a"], "means": [0.0], "stds": [0.0]},
        {"kind": "tabular", "feature_names": ["a", "b"], "means": [0.0], "stds": [1.0]},
        {"kind": "image", "height": 100, "width": 100, "channels": 3, "max_decoded_bytes": 10},
        {"kind": "audio"},
        {"kind": "text", "max_chars": 10, "unknown": 1},
    ],
    ids=[
        "duplicate-names",
        "means-without-stds",
        "zero-std",
        "length-mismatch",
        "image-over-limit",
        "unknown-kind",
        "unknown-key",
    ],  # fmt: skip
)
def test_inconsistent_schemas_are_configuration_errors(document: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        parse_input_schema(json.dumps(document))


def test_image_must_match_declared_shape_and_value_range() -> None:
    schema = ImageInputSchema(kind="image", height=2, width=2, channels=1, max_value=16)
    model = instance_model_for(schema)
    good = base64.b64encode(bytes([1, 2, 3, 16])).decode()
    assert schema.to_endpoint(model.model_validate({"b64": good})) == [1, 2, 3, 16]
    for bad in (bytes([1, 2, 3]), bytes([1, 2, 3, 17])):
        with pytest.raises(ValidationError):
            model.model_validate({"b64": base64.b64encode(bad).decode()})


def test_schema_source_must_be_exactly_one() -> None:
    inline = json.dumps({"kind": "text"})
    assert load_input_schema({"MODEL_INPUT_SCHEMA": inline}).kind == "text"
    with pytest.raises(ConfigurationError):
        load_input_schema({})
    with pytest.raises(ConfigurationError):
        load_input_schema({"MODEL_INPUT_SCHEMA": inline, "MODEL_INPUT_SCHEMA_URI": "s3://b/k"})
    with pytest.raises(ConfigurationError):
        load_input_schema({"MODEL_INPUT_SCHEMA_URI": "https://example.com/schema.json"})
