"""docs/api.md documents every gateway response the stack deploys, with its code and message."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.gateway_responses import GATEWAY_RESPONSES

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def gateway_section() -> str:
    text = API_DOC.read_text(encoding="utf-8")
    return text.split("### Errors API Gateway answers itself", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("response_type", sorted(GATEWAY_RESPONSES))
def test_each_deployed_gateway_response_is_documented(response_type: str) -> None:
    status, code, message = GATEWAY_RESPONSES[response_type]
    rows = [line for line in gateway_section().splitlines() if f"`{response_type}`" in line]
    # THEN one row names it, with its status, code and (when the stack sets one) its message
    assert len(rows) == 1, response_type
    assert f"`{code}`" in rows[0]
    documented_status = status or response_type.removeprefix("DEFAULT_").lower()  # DEFAULT_4XX: "4xx"
    assert rows[0].startswith(f"| {documented_status} ")
    assert f'"{message}"' in rows[0] if message else "API Gateway's own" in rows[0]
