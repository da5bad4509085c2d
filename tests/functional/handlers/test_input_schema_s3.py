"""The input schema read from S3 (MODEL_INPUT_SCHEMA_URI) with a moto-backed client."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.common.errors import ConfigurationError
from handlers.common.input_schema import TabularInputSchema, load_input_schema

SCHEMA = {"kind": "tabular", "feature_names": ["age", "bmi"], "means": [50, 25], "stds": [10, 5]}


def test_schema_is_read_from_s3(aws: dict[str, Any]) -> None:
    # GIVEN the schema stored in the artifacts bucket
    aws["s3"].create_bucket(Bucket="mlp-dev-artifacts")
    aws["s3"].put_object(Bucket="mlp-dev-artifacts", Key="schemas/diabetes.json", Body=json.dumps(SCHEMA))
    # WHEN it is loaded through an injected client
    schema = load_input_schema(
        {"MODEL_INPUT_SCHEMA_URI": "s3://mlp-dev-artifacts/schemas/diabetes.json"}, lambda: aws["s3"]
    )
    # THEN it is the tabular contract with its statistics
    assert schema.kind == "tabular"
    assert isinstance(schema, TabularInputSchema)
    assert schema.feature_names == ("age", "bmi")


def test_a_bad_schema_in_s3_names_the_problem(aws: dict[str, Any]) -> None:
    aws["s3"].create_bucket(Bucket="mlp-dev-artifacts")
    aws["s3"].put_object(Bucket="mlp-dev-artifacts", Key="s.json", Body=b'{"kind": "tabular"}')
    with pytest.raises(ConfigurationError, match="feature_names"):
        load_input_schema({"MODEL_INPUT_SCHEMA_URI": "s3://mlp-dev-artifacts/s.json"}, lambda: aws["s3"])
