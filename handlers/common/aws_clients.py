"""boto clients made lazily and replaceable by tests (a Stubber- or moto-backed client).

botocore is used without boto3: boto3 brings s3transfer, which costs ~70 ms of cold start and
gives these single-call clients nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

ClientT = TypeVar("ClientT")


class LazyClient(Generic[ClientT]):
    """A client made on first use, not at import (cold start and tests both gain)."""

    def __init__(self, factory: Callable[[], ClientT]) -> None:
        self._factory = factory
        self._client: ClientT | None = None

    def get(self) -> ClientT:
        if self._client is None:
            self._client = self._factory()
        return self._client

    def set(self, client: ClientT | None) -> None:
        """Hand in a client (tests), or ``None`` to build a fresh one on next use."""
        self._client = client


def botocore_client(service: str, config: Any = None, endpoint_url: str | None = None) -> Any:
    """A botocore client with the default credential and region chain (as boto3.client would)."""
    import botocore.session  # noqa: PLC0415 - loaded with the first client, not at import

    return botocore.session.get_session().create_client(service, config=config, endpoint_url=endpoint_url)


def profile_free_session() -> Any:
    """A botocore session that ignores ``AWS_PROFILE``: for work that needs no identity (botocore's
    bundled data, the local emulator), which a missing profile must not break."""
    import botocore.session  # noqa: PLC0415 - loaded on use, not at import

    # ``profile`` read from nowhere: not AWS_PROFILE / AWS_DEFAULT_PROFILE, not a config file.
    return botocore.session.Session(session_vars={"profile": (None, None, None, None)})
