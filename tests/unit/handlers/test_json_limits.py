"""The raw-body checks shared by the API and the model server, and the API's use of them."""

from __future__ import annotations

import pytest

from handlers.api import handler
from handlers.api.request import parse_json
from handlers.common.contracts import MAX_BODY_BYTES, MAX_JSON_DEPTH
from handlers.common.errors import ConfigurationError, InvalidRequestError
from handlers.common.json_limits import json_depth_exceeds, number_beyond_float32


@pytest.mark.parametrize(
    ("raw", "too_deep"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), True),
        (b'["' + b"[" * 500 + b'"]', False),  # brackets inside a string do not nest
        (b'["\\"' + b"[" * 500 + b'"]', False),  # nor after an escaped quote
    ],
)
def test_depth_is_counted_outside_strings(raw, too_deep):
    assert json_depth_exceeds(raw) is too_deep


@pytest.mark.parametrize(
    ("raw", "beyond"),
    [
        (b"[1e39]", True),
        (b"[-1E+040]", True),
        (b"[" + b"9" * 401 + b"]", True),
        (b"[3.4e38, 1e-45, 0." + b"1" * 60 + b"]", False),
        (b'["1e99", "' + b"9" * 401 + b'"]', False),  # strings are not numbers
    ],
)
def test_numbers_beyond_float32_are_found(raw, beyond):
    assert number_beyond_float32(raw) is beyond


def test_the_api_refuses_deep_nesting_before_parsing():
    with pytest.raises(InvalidRequestError, match="nested deeper"):
        parse_json(b"[" * 1000 + b"]" * 1000)


def test_the_api_refuses_an_integer_too_long_to_parse():
    with pytest.raises(InvalidRequestError):
        parse_json(b"[" + b"9" * 5000 + b"]")


def test_the_api_limit_cannot_exceed_the_model_servers(monkeypatch):
    # GIVEN a configured limit one byte over the platform's
    monkeypatch.setenv("MAX_BODY_BYTES", str(MAX_BODY_BYTES + 1))
    handler.reset_configuration()
    try:
        # THEN the API refuses the configuration
        with pytest.raises(ConfigurationError):
            handler.settings()
        monkeypatch.setenv("MAX_BODY_BYTES", str(MAX_BODY_BYTES))
        handler.reset_configuration()
        assert handler.settings().max_body_bytes == MAX_BODY_BYTES
    finally:
        handler.reset_configuration()
