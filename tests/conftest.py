"""Fixtures every tier shares."""

from __future__ import annotations

import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake keys, so no test can ever reach a real account (set before any mock or client)."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
