"""How many torch threads each forward pass gets when several workers share the CPU cores.

With N workers on C cores, each worker runs its forward passes on C / N threads, so that under
load the workers do not oversubscribe the cores (an OpenMP team that loses a core to another
worker stalls at its barrier for a scheduler tick). A lone caller would then get only C / N cores
for its one-row pass while the others sit idle. So a one-row pass runs on all C threads when it is
the only request in flight on the whole server; the workers share one counter of requests in
flight (``multiprocessing.Value``) for that. A worker that runs alone keeps its threads throughout.
"""

from __future__ import annotations

from typing import Any

import torch

LONE_CONCURRENCY = 1.25  # arrivals have found at most ~1 request in flight: a lone caller
_RECENT_WEIGHT = 0.1  # weight of the newest arrival in that running mean


class ForwardThreads:
    """Counts requests in flight across the workers and sets each forward pass's thread count.

    Parameters: ``base`` threads per worker; ``spare`` threads for a one-row pass of the only
    request in flight (all the cores); ``in_flight`` the workers' shared counter, or None for a
    worker that runs alone (then every pass gets ``base``).
    """

    def __init__(self, base: int, spare: int, in_flight: Any | None) -> None:
        self.base = max(1, base)
        self.spare = max(self.base, spare) if in_flight is not None else self.base
        self._in_flight = in_flight
        self._current = torch.get_num_threads()
        self.recent_concurrency = 1.0  # running mean of the requests in flight that arrivals find

    def started(self) -> None:
        """A request arrived (called on the event loop)."""
        if self._in_flight is not None:
            with self._in_flight.get_lock():
                self._in_flight.value += 1
                seen = self._in_flight.value
            self.recent_concurrency += (seen - self.recent_concurrency) * _RECENT_WEIGHT

    def finished(self) -> None:
        """A request was answered or failed."""
        if self._in_flight is not None:
            with self._in_flight.get_lock():
                self._in_flight.value -= 1

    def threads_for(self, rows: int, in_flight: int) -> int:
        """``spare`` for a one-row pass of the server's only request in flight while callers have
        been coming one at a time (a second caller that is merely between two requests would
        otherwise find its worker's core taken), else ``base``."""
        alone = in_flight <= 1 and self.recent_concurrency < LONE_CONCURRENCY
        return self.spare if rows == 1 and alone else self.base

    def before_forward(self, rows: int) -> int:
        """Set the thread count for a pass over ``rows`` rows (on the model thread); returns it."""
        in_flight = self._in_flight.value if self._in_flight is not None else 1
        threads = self.threads_for(rows, in_flight) if self.spare != self.base else self.base
        if threads != self._current:  # torch.set_num_threads is cheap, but only needed on a change
            torch.set_num_threads(threads)
            self._current = threads
        return threads
