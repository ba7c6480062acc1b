"""The metrics thread answers while the worker's loop is busy, from the KPI families
the loop last evaluated (streams.outputs.scrape)."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from streams.outputs.scrape import EvaluatedOnLoop, serve_metrics


class Reads:
    """A collector that reads state only the loop may touch (as KpiCollector does)."""

    def __init__(self) -> None:
        self.value = 0.0
        self.calls = 0

    def collect(self) -> Iterable[Any]:
        self.calls += 1
        yield GaugeMetricFamily("kpi_streams_kpi_count", "a KPI", value=self.value)


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_thread_serves_what_the_loop_evaluated_and_asks_for_more() -> None:
    state = Reads()
    cached = EvaluatedOnLoop(state)
    registry = CollectorRegistry()
    events = Counter("kpi_streams_test_events", "live", registry=registry)
    port = _free_port()
    server = serve_metrics(registry, cached, "127.0.0.1", port)
    try:
        state.value = 7
        events.inc(3)
        text = _get(port)
        assert "kpi_streams_test_events_total 3.0" in text  # live
        assert "kpi_streams_kpi_count" not in text and state.calls == 0  # not evaluated yet
        assert cached.asked.is_set()
        cached.evaluate()  # what the loop does after a scrape asked
        assert not cached.asked.is_set()
        state.value = 8  # changed after the evaluation: served at the next one
        text = _get(port)
        assert "kpi_streams_kpi_count 7.0" in text and state.calls == 1
        assert cached.asked.is_set()
    finally:
        server.shutdown()
        server.server_close()


def test_the_thread_answers_while_the_loop_holds_the_interpreter() -> None:
    """The main thread spins in Python (a replay batch) until the scrape is answered or
    ten seconds pass: the answer arrives while it is still spinning."""
    registry = CollectorRegistry()
    Counter("kpi_streams_test_events", "live", registry=registry).inc()
    cached = EvaluatedOnLoop(Reads())
    cached.evaluate()
    port = _free_port()
    server = serve_metrics(registry, cached, "127.0.0.1", port)
    answered = threading.Event()
    texts: list[str] = []

    def scrape() -> None:
        texts.append(_get(port))
        answered.set()

    try:
        threading.Thread(target=scrape, daemon=True).start()
        spins, deadline = 0, threading.Event()
        timer = threading.Timer(10.0, deadline.set)
        timer.start()
        while not (answered.is_set() or deadline.is_set()):
            spins += sum(i * i for i in range(1000))  # pure Python: holds the GIL
        timer.cancel()
        assert answered.is_set() and not deadline.is_set()
        assert texts and "kpi_streams_test_events_total 1.0" in texts[0]
        assert "kpi_streams_kpi_count 0.0" in texts[0]
    finally:
        server.shutdown()
        server.server_close()


def test_a_taken_port_is_named_in_the_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match="KPI_METRICS_PORT"):
            serve_metrics(CollectorRegistry(), EvaluatedOnLoop(), "127.0.0.1", port)


def test_only_metrics_is_served_there() -> None:
    port = _free_port()
    server = serve_metrics(CollectorRegistry(), EvaluatedOnLoop(), "127.0.0.1", port)
    try:
        with pytest.raises(urllib.error.HTTPError, match="404") as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kpis", timeout=10)
        info.value.close()  # the error holds the response and its socket
    finally:
        server.shutdown()
        server.server_close()
