"""The model server's metrics: Prometheus text summed over every worker, and CloudWatch EMF lines.

Requests and forward passes are tallied in plain per-worker counters (a dict increment and a
bisect: no lock, no system call, well under a microsecond per request; docs/serving.md). Calling
prometheus_client on every request would cost about 5 us (a process-wide lock and an mmap write
per value), which this server's request budget cannot spare. Once a second, and before answering
a scrape, a worker publishes what changed into prometheus_client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, a private folder the server creates per run); ``GET /metrics`` sums
every worker's files, so a scrape counts all requests whichever worker answers it. Other workers'
figures are at most ``PUBLISH_INTERVAL_S`` old.

When ``emf_interval_s`` is set, each worker also prints one CloudWatch Embedded Metric Format line
per interval on stdout (what changed since its last line): SageMaker ships the container's stdout
to CloudWatch Logs, which turns the line into metrics without an agent.

Threads: request figures are written on the event loop only, forward-pass figures on the model
thread only; ``publish`` and ``emf_line`` run on the event loop and read both (an int is read
whole; a count and its sum may land one publish apart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from handlers.common.contracts import ENDPOINT_NAME_ENV, METRICS_NAMESPACE, VARIANT_NAME_ENV

logger = logging.getLogger("handlers.serving.server")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it once, at import
MODEL_VERSION_ENV = "MODEL_VERSION"  # the registry version the deployer puts in the container
PREFIX = "model_server"
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST
PUBLISH_INTERVAL_S = 1.0
# Seconds: a one-row pass on a CPU takes ~0.5 ms, a queued request under load tens of ms, and
# the request timeout is 60 s.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # requests or rows per forward pass
EMF_DIMENSIONS = ("EndpointName", "VariantName")
UNKNOWN = "unknown"


class Tally:
    """A histogram in plain ints: counts per bucket (the last one is above every bound) and the
    sum. One thread writes it."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket i holds values <= bounds[i]
        self.total += value

    def snapshot(self) -> tuple[list[int], float]:
        return list(self.counts), self.total


class ForwardPasses:
    """Per forward pass: requests and rows that shared it, and its seconds (the model thread's)."""

    __slots__ = ("requests", "rows", "seconds")

    def __init__(self) -> None:
        self.requests = Tally(BATCH_BUCKETS)
        self.rows = Tally(BATCH_BUCKETS)
        self.seconds = Tally(LATENCY_BUCKETS)

    def record(self, requests: int, rows: int, seconds: float) -> None:
        self.requests.observe(requests)
        self.rows.observe(rows)
        self.seconds.observe(seconds)


@dataclass(frozen=True)
class _Since:
    """Cumulative figures at one moment, to take differences from."""

    statuses: dict[int, int]
    tallies: tuple[tuple[list[int], float], ...]


class _Families:
    """The Prometheus metrics, in a registry of their own (scraped directly only when no
    multiprocess folder is set, as in ``server check``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "Invocations answered, by HTTP status", ["status"], registry=r
        )
        self.errors = Counter(
            f"{PREFIX}_errors", "Invocations answered 4xx (client) or 5xx (server)", ["kind"], registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Seconds from an invocation's arrival to its answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests", "Requests per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_rows = Histogram(
            f"{PREFIX}_batch_rows", "Rows per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.forward = Histogram(
            f"{PREFIX}_forward_duration_seconds",
            "Seconds per forward pass (predict_fn)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_requests",
            "Invocations being answered (sampled each second)",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queued = Gauge(
            f"{PREFIX}_queued_requests",
            "Decoded requests waiting for the model thread (sampled each second)",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.load_seconds = Gauge(
            f"{PREFIX}_model_load_seconds",
            "Seconds model_fn took (the slowest live worker)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when every live worker has its model loaded and is not shutting down",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.workers = Gauge(
            f"{PREFIX}_workers", "Live worker processes", multiprocess_mode="livesum", registry=r
        )


class ServerMetrics:
    """One worker's figures, published for Prometheus and, optionally, printed as EMF lines.

    Parameters: ``ready`` says whether this worker serves (model loaded, not draining);
    ``emf_interval_s`` seconds between EMF lines (0: none); ``environ`` gives the EMF dimensions
    (defaults to ``os.environ``); ``emit`` writes one EMF line (defaults to stdout).
    """

    def __init__(
        self,
        ready: Callable[[], bool],
        *,
        emf_interval_s: float = 0.0,
        environ: Mapping[str, str] | None = None,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_DIR_ENV) or None
        if self.multiprocess_dir and values.ValueClass is values.MutexValue:
            raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_DIR_ENV} was set")
        self._ready = ready
        self.statuses: dict[int, int] = {}
        self.latency = Tally(LATENCY_BUCKETS)
        self.in_flight = 0
        self.passes = ForwardPasses()
        self._queued: Callable[[], int] = lambda: 0
        self._families = _Families()
        self._families.workers.set(1)
        self._families.ready.set(0)
        self._published = self._now()
        self.emf_interval_s = emf_interval_s
        env = os.environ if environ is None else environ
        self.dimensions = {
            "EndpointName": env.get(ENDPOINT_NAME_ENV) or UNKNOWN,
            "VariantName": env.get(VARIANT_NAME_ENV) or UNKNOWN,
        }
        self.model_version = env.get(MODEL_VERSION_ENV) or None
        self._emit = emit or _write_stdout
        self._emitted = self._now()

    # --- the hot path (event loop) ---------------------------------------------------------------

    def request_started(self) -> float:
        """An invocation arrived; returns its start time for ``request_finished``."""
        self.in_flight += 1
        return time.perf_counter()

    def count(self, status: int) -> None:
        """An invocation was answered with ``status``."""
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def request_finished(self, started: float) -> None:
        """The invocation that started at ``started`` is done (answered or abandoned)."""
        self.in_flight -= 1
        self.latency.observe(time.perf_counter() - started)

    # --- once per worker --------------------------------------------------------------------------

    def model_loaded(self, seconds: float, passes: ForwardPasses, queued: Callable[[], int]) -> None:
        """The model is loaded: its load time, and the batcher's per-pass figures and queue."""
        self.passes = passes
        self._queued = queued
        self._families.load_seconds.set(seconds)

    # --- publishing (event loop) ------------------------------------------------------------------

    def publish(self) -> None:
        """Add what changed since the last publish to the Prometheus metrics; sample the gauges."""
        families, now = self._families, self._now()
        for status, count in _differences(now.statuses, self._published.statuses).items():
            families.requests.labels(str(status)).inc(count)
            if status >= 400:
                families.errors.labels("client" if status < 500 else "server").inc(count)
        histograms = (families.latency, families.batch_requests, families.batch_rows, families.forward)
        for histogram, current, previous in zip(
            histograms, now.tallies, self._published.tallies, strict=True
        ):
            _add_to_histogram(histogram, current, previous)
        self._published = now
        families.in_flight.set(self.in_flight)
        families.queued.set(self._queued())
        families.ready.set(1 if self._ready() else 0)

    def exposition(self) -> bytes:
        """The Prometheus text of every worker (this one's published first)."""
        self.publish()
        if self.multiprocess_dir is None:
            return generate_latest(self._families.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def emf_document(self, timestamp_ms: int | None = None) -> dict[str, Any]:
        """The EMF document of what changed since the last one (and marks it as sent)."""
        now, since = self._now(), self._emitted
        self._emitted = now
        statuses = _differences(now.statuses, since.statuses)
        latency, requests_per_pass, rows_per_pass, forward = (
            _tally_difference(current, previous)
            for current, previous in zip(now.tallies, since.tallies, strict=True)
        )
        figures: dict[str, tuple[float, str]] = {
            "Requests": (sum(statuses.values()), "Count"),
            "ClientErrors": (sum(n for s, n in statuses.items() if 400 <= s < 500), "Count"),
            "ServerErrors": (sum(n for s, n in statuses.items() if s >= 500), "Count"),
        }
        _add_quantiles(figures, "ServerLatency", latency)
        passes = sum(requests_per_pass[0])
        figures["ForwardPasses"] = (passes, "Count")
        if passes:
            figures["MeanBatchRequests"] = (round(requests_per_pass[1] / passes, 3), "Count")
            figures["MeanBatchRows"] = (round(rows_per_pass[1] / passes, 3), "Count")
            _add_quantiles(figures, "ForwardLatency", forward)
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": stamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": METRICS_NAMESPACE,
                        "Dimensions": [list(EMF_DIMENSIONS)],
                        "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in figures.items()],
                    }
                ],
            },
            **self.dimensions,
            **{name: value for name, (value, _) in figures.items()},
            "WorkerPid": os.getpid(),  # not a dimension: for Logs Insights only
        }
        if self.model_version is not None:
            document["ModelVersion"] = self.model_version
        return document

    def emit_emf(self) -> None:
        """Print the EMF line of what changed since the last one."""
        self._emit(json.dumps(self.emf_document(), separators=(",", ":")))

    async def report(self) -> None:
        """Publish every ``PUBLISH_INTERVAL_S`` and print an EMF line every ``emf_interval_s``
        (when set), until cancelled. A failure is logged and tried again next time."""
        interval = min(PUBLISH_INTERVAL_S, self.emf_interval_s or PUBLISH_INTERVAL_S)
        next_line = time.monotonic() + self.emf_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.publish()
                if self.emf_interval_s and time.monotonic() >= next_line:
                    next_line = time.monotonic() + self.emf_interval_s
                    self.emit_emf()
            except Exception:
                logger.warning("could not publish the server's metrics", exc_info=True)

    def close(self) -> None:
        """At shutdown: publish the rest, and print the last EMF line (when on)."""
        try:
            self.publish()
            if self.emf_interval_s:
                self.emit_emf()
        except Exception:
            logger.warning("could not publish the server's last metrics", exc_info=True)

    def _now(self) -> _Since:
        passes = self.passes
        tallies = (self.latency, passes.requests, passes.rows, passes.seconds)
        return _Since(dict(self.statuses), tuple(t.snapshot() for t in tallies))


def wants_json(accept: str | None) -> bool:
    """``GET /metrics`` answers this worker's JSON when Accept names application/json first."""
    first = (accept or "").split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first == "application/json"


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of a bucketed histogram, interpolated within its bucket as Prometheus'
    ``histogram_quantile`` does (the last bound for values above it); None when empty."""
    total = sum(counts)
    if not total:
        return None
    rank, below = q * total, 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            if index == len(bounds):
                return float(bounds[-1])
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - below) / count
        below += count
    return float(bounds[-1])


def _add_quantiles(figures: dict[str, tuple[float, str]], name: str, tally: tuple[list[int], float]) -> None:
    counts = tally[0]
    bounds = LATENCY_BUCKETS
    for label, q in (("P50", 0.5), ("P99", 0.99)):
        seconds = quantile(bounds, counts, q)
        if seconds is not None:
            figures[f"{name}{label}"] = (round(seconds * 1000, 3), "Milliseconds")


def _differences(current: dict[int, int], previous: dict[int, int]) -> dict[int, int]:
    return {
        key: value - previous.get(key, 0) for key, value in current.items() if value != previous.get(key, 0)
    }


def _tally_difference(
    current: tuple[list[int], float], previous: tuple[list[int], float]
) -> tuple[list[int], float]:
    return [a - b for a, b in zip(current[0], previous[0], strict=True)], current[1] - previous[1]


def _add_to_histogram(
    histogram: Histogram, current: tuple[list[int], float], previous: tuple[list[int], float]
) -> None:
    """Add a tally's change to ``histogram``. prometheus_client observes one value at a time, and
    a second of traffic is thousands of them, so the change is added per bucket to the values it
    keeps (per bucket, not cumulative; the exposition accumulates them)."""
    counts, total = _tally_difference(current, previous)
    if not any(counts):
        return
    for value, count in zip(histogram._buckets, counts, strict=True):
        if count:
            value.inc(count)
    histogram._sum.inc(total)


def _write_stdout(line: str) -> None:
    # One write per line: lines from several workers never interleave (a pipe write of up to
    # PIPE_BUF bytes is atomic).
    os.write(1, line.encode() + b"\n")
