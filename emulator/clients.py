"""boto3 clients of the emulator: its endpoint, its own credentials (moto checks none)."""

from __future__ import annotations

from typing import Any

import boto3

from emulator.isolation import EMULATOR_CREDENTIALS
from handlers.common.aws_clients import profile_free_session


def emulator_client(service: str, region: str, aws_url: str) -> Any:
    """A boto3 client of ``service`` at the emulator's ``aws_url``; never the user's credentials,
    and unaffected by the user's profile (a missing ``AWS_PROFILE`` does not break it)."""
    session = boto3.session.Session(botocore_session=profile_free_session())
    return session.client(  # type: ignore[call-overload]
        service,
        region_name=region,
        endpoint_url=aws_url,
        aws_access_key_id=EMULATOR_CREDENTIALS.access_key_id,
        aws_secret_access_key=EMULATOR_CREDENTIALS.secret_access_key,
    )
