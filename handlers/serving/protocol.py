"""uvicorn's HTTP protocol with a read timeout: a client that opens a connection, or starts a
request, has ``read_timeout_s`` to send the whole request (headers and body); a stalled one gets a
JSON 408 and its connection is closed, so it cannot hold a connection open indefinitely
(uvicorn bounds only the idle time between requests).

The timer is armed only while a request is incomplete at the end of a read, so an ordinary
request, which arrives whole in one read, costs two attribute stores and no timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("handlers.serving.server")

DEFAULT_READ_TIMEOUT_S = 10.0


class ReadTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the read timeout; ``with_timeout`` makes one for a setting."""

    read_timeout_s = DEFAULT_READ_TIMEOUT_S

    @classmethod
    def with_timeout(cls, seconds: float) -> type[ReadTimeoutProtocol]:
        return type(cls.__name__, (cls,), {"read_timeout_s": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._incomplete = False
        self._cycle_before: Any = None  # the cycle of the request before the one being read
        # The first request is due from the moment the connection opens (uvicorn arms no timer yet).
        self._read_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.read_timeout_s, self._read_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._incomplete = True
        self._cycle_before = self.cycle  # uvicorn makes the new cycle only once the headers are in

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._incomplete = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._incomplete:
            self._disarm()
        elif self._read_deadline is None:  # counted from the read that began the request
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self.cycle is not self._cycle_before else None
        if cycle is None or not cycle.response_started:  # an app awaiting the body sees the disconnect
            logger.info("closing a connection that sent no complete request in %g s", self.read_timeout_s)
            self.transport.write(_timeout_response(self.read_timeout_s))
        self.transport.close()


def _timeout_response(seconds: float) -> bytes:
    document: dict[str, Any] = {
        "error": {
            "code": "request_timeout",
            "message": f"the request did not arrive whole within {seconds:g} s",
        }
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
