"""Property: whatever a client sends, a mistake is a 4xx with our error body, never a 5xx or a trace."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.response import StreamingBody
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from handlers.api import endpoint_client

from .conftest import TABULAR_SCHEMA, TEXT_SCHEMA, invoke, predict_event

FEATURES = list(TABULAR_SCHEMA["feature_names"])


class CountingEndpoint:
    """Answers as many predictions as it was sent instances, so valid bodies succeed (200)."""

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        count = len(json.loads(params["Body"])["instances"])
        payload = json.dumps({"predictions": [0] * count, "confidence": [0.5] * count}).encode()
        return {"Body": StreamingBody(io.BytesIO(payload), len(payload))}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
any_json = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Near-misses reach the deepest validators: the right keys with wrong, missing or extra values.
tabular_instance = st.one_of(
    st.dictionaries(st.sampled_from([*FEATURES, "label", ""]), scalars, max_size=5),
    st.lists(scalars, max_size=5),
)
text_instance = st.one_of(
    st.fixed_dictionaries({"text": scalars}), st.dictionaries(st.text(max_size=5), scalars)
)
requests = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(st.one_of(tabular_instance, text_instance), max_size=6)}),
    st.fixed_dictionaries({"instance": st.one_of(tabular_instance, text_instance)}),
    any_json,
)


def _body(document: Any) -> str:
    # allow_nan: clients do send NaN / Infinity literals, the API must refuse them itself.
    return json.dumps(document, allow_nan=True)


bodies = st.one_of(
    requests.map(_body),
    st.text(max_size=200),
    st.binary(max_size=200),  # sent base64-encoded, as API Gateway does for binary bodies
)


@pytest.fixture
def counting_endpoint(lambda_env: None) -> Any:
    endpoint_client.runtime_client.set(CountingEndpoint())  # type: ignore[arg-type]
    yield
    endpoint_client.runtime_client.set(None)


@pytest.mark.parametrize("schema", [TEXT_SCHEMA, TABULAR_SCHEMA], ids=["text", "tabular"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_client_mistakes_are_never_5xx_and_never_leak_a_trace(
    use_schema: Any, counting_endpoint: None, schema: dict[str, Any], body: str | bytes
) -> None:
    # GIVEN any body a client might send (random JSON, near-miss requests, random text or bytes)
    use_schema(schema)
    # WHEN the API handles it
    answer = invoke(predict_event(body))
    event(f"status {answer.status}")  # --hypothesis-show-statistics shows the mix of outcomes
    # THEN it is either served or refused as the client's mistake, in the documented shape
    assert answer.status in {200, 400, 413}, answer.body
    if answer.status == 200:
        assert len(answer.body["predictions"]) == len(answer.body["confidence"]) >= 1
    else:
        assert set(answer.body["error"]) == {"code", "message", "request_id", "details"}
    assert "Traceback" not in answer.raw_body and 'File "' not in answer.raw_body
