"""/metrics off the event loop: a thread answers Prometheus on ``KPI_METRICS_PORT``.

The worker's event loop runs one batch at a time, and a batch of a replay can hold
it for a second; the web server's ``/metrics`` waits for it. A scrape that waits
that long looks like a sick worker. So the metrics port is served by a thread
(prometheus-client's own server), which answers while the loop is busy:

- pipeline counters, gauges and histograms, and the process collector, are
  thread-safe and read live;
- the KPI gauges (and target pacing) are evaluated from the merge state, which only
  the loop may read, so the loop evaluates them into families between scrapes (at
  most once a second, and only after a scrape asked) and the thread serves the
  families last evaluated: at most one scrape interval old.

The web server's ``/metrics`` evaluates them afresh, on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class EvaluatedOnLoop(Collector):
    """Serves the families its collectors yielded when the loop last evaluated them."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = list(collectors)
        self.families: list[Any] = []
        self.asked = threading.Event()  # a scrape wants a newer evaluation
        self.asked.set()

    def add(self, collector: Collector) -> None:
        self.collectors.append(collector)

    def evaluate(self) -> None:
        """On the loop: evaluate every collector now (the families are swapped whole,
        so a thread reading them sees the old list or the new one)."""
        self.families = [f for c in self.collectors for f in c.collect()]
        self.asked.clear()

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        self.asked.set()
        return list(self.families)

    async def keep_evaluated(self, interval_s: float = 1.0) -> None:
        """Evaluate again whenever a scrape asked since the last time."""
        while True:
            await asyncio.sleep(interval_s)
            if self.asked.is_set():
                try:
                    self.evaluate()
                except Exception:  # a bug in a collector must not end the worker
                    log.exception("metrics: evaluating the KPI gauges failed")


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Any:
    """Start the metrics thread; raises OSError (named) if the port is taken."""
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port} (KPI_METRICS_PORT): "
                      f"{exc.strerror or exc}") from exc
    log.info("metrics on http://%s:%d/metrics (a thread: answers while the loop works)",
             host, port)
    return server
