"""/metrics off the event loop: a thread answers Prometheus on ``KPI_METRICS_PORT``.

The worker's event loop is busy nearly all the time during a replay (in slices of a
batch, flushes and emission rounds), and the web server's ``/metrics`` waits its
turn and then evaluates every KPI gauge; a scrape that waits long looks like a sick
worker. So the metrics port is served by a thread,
which answers while the loop is busy:

- pipeline counters, gauges and histograms, and the process collector, are
  thread-safe and read live (a few hundred samples: about a millisecond);
- the KPI gauges (and target pacing) are evaluated from the merge state, which only
  the loop may read, so the loop evaluates and formats them after a scrape asked
  (at most every 5 s) and the thread serves the text last formatted: at most
  one scrape interval old. Formatting them is most of a scrape's work (about
  20 ms for 3,000 samples), so the thread holds the interpreter only briefly.

The thread still waits for the interpreter at each turn of an answer (accept,
read, write); the worker hands it over within ``streams.worker.SWITCH_INTERVAL_S``.

The web server's ``/metrics`` evaluates them afresh, on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class _Families:
    """What ``generate_latest`` formats: a fixed list of metric families."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterable[Any]:
        return self.families


class EvaluatedOnLoop:
    """The exposition text of collectors that only the loop may run, as last formatted."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = list(collectors)
        self.text = b""
        self.asked = threading.Event()  # a scrape wants a newer text
        self.asked.set()

    def add(self, collector: Collector) -> None:
        self.collectors.append(collector)

    def evaluate(self) -> bytes:
        """On the loop: evaluate and format every collector now (the text is swapped
        whole, so a thread reading it sees the old text or the new one)."""
        families = [f for c in self.collectors for f in c.collect()]
        self.text = generate_latest(_Families(families))
        self.asked.clear()
        return self.text

    def served(self) -> bytes:
        """From any thread: the last text, and a request for a newer one."""
        self.asked.set()
        return self.text

    async def keep_evaluated(self, interval_s: float = 5.0) -> None:
        """Evaluate again whenever a scrape asked since the last time."""
        while True:
            await asyncio.sleep(interval_s)
            if self.asked.is_set():
                try:
                    self.evaluate()
                except Exception:  # a bug in a collector must not end the worker
                    log.exception("metrics: evaluating the KPI gauges failed")


def exposition(live: CollectorRegistry, evaluated: EvaluatedOnLoop) -> bytes:
    """From any thread: the live metrics, then the evaluated ones as last formatted."""
    return generate_latest(live) + evaluated.served()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not news


def _wsgi(body: Callable[[], bytes]) -> Callable[..., list[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        text = body()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                   ("Content-Length", str(len(text)))])
        return [text]
    return app


def serve_metrics(live: CollectorRegistry, evaluated: EvaluatedOnLoop, host: str,
                  port: int) -> WSGIServer:
    """Start the metrics thread; raises OSError (naming the setting) if the port is
    taken. ``shutdown()`` and ``server_close()`` stop it."""
    try:
        server = make_server(host, port, _wsgi(lambda: exposition(live, evaluated)),
                             server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port} (KPI_METRICS_PORT): "
                      f"{exc.strerror or exc}") from exc
    threading.Thread(target=server.serve_forever, name="kpi-metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics (a thread: answers while the loop works)",
             host, port)
    return server
