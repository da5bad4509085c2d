"""Closed-loop HTTP/1.1 load generator for ``bench/serving.py`` (asyncio protocols, keep-alive).

Each of ``concurrency`` callers owns one keep-alive connection and sends its next request as soon as
the previous answer is in (closed loop). Requests are prebuilt bytes; responses are parsed just
enough to find the status and the end of the body (Content-Length or chunked), so the client's
own cost per request stays small. Its ceiling is measured against :func:`serve_trivial`, a server
that answers every request with a fixed body, and reported beside the results.

Also runnable as ``python -m bench._serving_loadgen --trivial-server --port P`` (that server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"  # traffic goes to loopback only
RECONNECT_PAUSE_S = 0.05  # after a failed request, so a dead server cannot spin the client
MAX_ERROR_SAMPLES = 5


@dataclass
class LoadResult:
    """One closed-loop run: what completed inside the measured window."""

    concurrency: int
    duration_s: float
    completed: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu_cores: float  # the generator's own CPU use during the window (2 cores in all here)
    error_samples: list[str] = field(default_factory=list)


def build_request(path: str, port: int, body: bytes, content_type: str = "application/json") -> bytes:
    """A complete HTTP/1.1 keep-alive POST, ready to write."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self._complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed mid-response ({exc})"))

    def request(self, payload: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter

    def _complete(self) -> None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        start = end + 4
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            total = start + int(head[at + 17 : stop if stop >= 0 else len(head)])
            if len(buffer) < total:
                return
            body = bytes(buffer[start:total])
        elif b"\r\ntransfer-encoding: chunked" in head:
            chunks = _read_chunked(buffer, start)
            if chunks is None:
                return
            body, total = chunks
        else:
            assert self.waiter is not None
            self.waiter.set_exception(ConnectionError("response without Content-Length or chunking"))
            return
        del buffer[:total]
        assert self.waiter is not None
        self.waiter.set_result((int(head[9:12]), body, b"\r\nconnection: close" not in head))


def _read_chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """(body, end offset) of a complete chunked body in ``buffer``, or None while incomplete."""
    parts: list[bytes] = []
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        if len(buffer) < line_end + 2 + size + 2:
            return None
        parts.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
        at = line_end + 2 + size + 2


async def _caller(
    port: int,
    requests: list[bytes],
    *,
    offset: int,
    window: tuple[float, float],
    latencies: list[float],
    failures: list[str],
) -> None:
    loop = asyncio.get_running_loop()
    measure_from, measure_until = window
    conn: _Connection | None = None
    index = offset
    while time.perf_counter() < measure_until:
        payload = requests[index % len(requests)]
        index += 1
        started = time.perf_counter()
        try:
            if conn is None or conn.closed:
                _, conn = await loop.create_connection(_Connection, HOST, port)
            status, body, keep_alive = await conn.request(payload)
            finished = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            if measure_from <= finished <= measure_until:
                latencies.append(finished - started)
            if not keep_alive:
                assert conn.transport is not None
                conn.transport.close()
                conn = None
        except (OSError, RuntimeError, ValueError) as exc:
            if measure_from <= time.perf_counter() <= measure_until:
                failures.append(f"{type(exc).__name__}: {exc}")
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = None
            await asyncio.sleep(RECONNECT_PAUSE_S)
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def _run(
    port: int, requests: list[bytes], *, concurrency: int, warmup_s: float, duration_s: float, grace_s: float
) -> LoadResult:
    measure_from = time.perf_counter() + warmup_s
    measure_until = measure_from + duration_s
    latencies: list[float] = []
    failures: list[str] = []
    tasks = [
        asyncio.create_task(
            _caller(
                port,
                requests,
                offset=i * 7,
                window=(measure_from, measure_until),
                latencies=latencies,
                failures=failures,
            )
        )
        for i in range(concurrency)
    ]
    await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
    cpu_before = time.process_time()
    await asyncio.sleep(max(0.0, measure_until - time.perf_counter()))
    cpu_used = time.process_time() - cpu_before
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:  # a request still unanswered long after the window: counted as an error
        task.cancel()
        failures.append(f"no answer within {grace_s:.0f} s after the window closed")
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    latencies.sort()
    count = len(latencies)

    def quantile(q: float) -> float:
        return latencies[min(count - 1, int(count * q))] * 1000 if count else float("nan")

    return LoadResult(
        concurrency=concurrency,
        duration_s=duration_s,
        completed=count,
        errors=len(failures),
        rps=count / duration_s,
        p50_ms=quantile(0.50),
        p99_ms=quantile(0.99),
        mean_ms=sum(latencies) / count * 1000 if count else float("nan"),
        client_cpu_cores=cpu_used / duration_s,
        error_samples=sorted(set(failures))[:MAX_ERROR_SAMPLES],
    )


def run_load(
    port: int,
    requests: list[bytes],
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    grace_s: float = 15.0,
) -> LoadResult:
    """Drive ``concurrency`` closed-loop callers at ``127.0.0.1:port``; bounded by the window + grace.

    Parameters: ``requests`` are complete HTTP requests (see :func:`build_request`), used round-robin.
    Returns: counts, throughput and latency quantiles of the answers completed inside the window.
    """
    return asyncio.run(
        _run(
            port, requests, concurrency=concurrency, warmup_s=warmup_s, duration_s=duration_s, grace_s=grace_s
        )
    )


class _TrivialServer(asyncio.Protocol):
    """Answers every request at once with a fixed JSON body (the load generator's ceiling)."""

    RESPONSE = b'{"predictions": [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]}'
    ANSWER = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(RESPONSE)).encode()
        + b"\r\n\r\n"
        + RESPONSE
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            if head.startswith(b"get /ping"):
                total = end + 4
            else:
                at = head.find(b"\r\ncontent-length:")
                stop = head.find(b"\r\n", at + 2)
                total = end + 4 + int(head[at + 17 : stop if stop >= 0 else len(head)])
                if len(self.buffer) < total:
                    return
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(self.ANSWER)


async def serve_trivial(port: int) -> None:
    """Serve :class:`_TrivialServer` on ``127.0.0.1:port`` until cancelled."""
    server = await asyncio.get_running_loop().create_server(_TrivialServer, HOST, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="the trivial endpoint of the serving benchmark")
    parser.add_argument("--trivial-server", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_trivial(args.port))


if __name__ == "__main__":
    main()
