"""The metrics process answers while the worker's loop, or its whole interpreter, is
busy, from the KPI families the loop last evaluated (streams.outputs.scrape)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
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


def test_the_process_serves_what_the_loop_evaluated_and_asks_for_more() -> None:
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


def test_it_answers_while_the_loop_holds_the_interpreter() -> None:
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


# Runs in a process of its own: starts a scrape when told, and prints when it ended
# (CLOCK_MONOTONIC is the machine's: comparable with this process's) and its text.
SCRAPER = """
import sys, time, urllib.error, urllib.request
sys.stdin.readline()
time.sleep(float(sys.argv[2]))  # (the hold is under way)
asked = time.monotonic()
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=30) as r:
        status, text = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
    e.close()
print(asked, time.monotonic(), status, "kpi_streams_test_events_total 1.0" in text, flush=True)
"""


def _per_step() -> float:
    probe = time.monotonic()
    sum(range(1_000_000))
    return max(time.monotonic() - probe, 1e-4) / 1_000_000


def _hold_interpreter(steps: int) -> tuple[float, float]:
    """One C call that runs no bytecode, so no other thread of this process runs (as
    the cycle collector holds the interpreter); returns when it began and ended."""
    began = time.monotonic()
    sum(range(steps))
    return began, time.monotonic()


def _scrape_during_hold(port: int, after_s: float, hold_s: float) -> tuple[float, list[str], float]:
    """A scrape from another process ``after_s`` into a hold of this process's
    interpreter of ``hold_s``: (hold began, the scraper's line split, hold ended)."""
    scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(port), str(after_s)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert scraper.stdin is not None
        steps = int(hold_s / _per_step())
        scraper.stdin.write("go\n")
        scraper.stdin.flush()
        began, ended = _hold_interpreter(steps)
        out, _ = scraper.communicate(timeout=30)
    finally:
        scraper.kill()
    return began, out.split(), ended


def test_it_answers_while_the_worker_interpreter_is_held() -> None:
    """What a thread could not do: the scrape is answered while the worker's
    interpreter is held by one long C call (its thread that feeds the process can
    not run then): with the text sent before, once the scrape has waited its
    ``WAIT_MS`` for a newer one."""
    registry = CollectorRegistry()
    Counter("kpi_streams_test_events", "live", registry=registry).inc()
    port = _free_port()
    server = serve_metrics(registry, EvaluatedOnLoop(), "127.0.0.1", port)
    try:
        _get(port)  # the process is up and has a text
        began, (asked, answered, status, live), ended = _scrape_during_hold(port, 0.5, 3.0)
        assert status == "200" and live == "True"
        assert began < float(asked) and float(answered) < ended, (began, asked, answered,
                                                                  ended)
    finally:
        server.shutdown()


def test_a_worker_held_longer_than_stale_s_looks_down() -> None:
    """A stuck worker must not look healthy: once the text it sent is older than
    ``stale_s``, a scrape gets 503 (Prometheus: ``up`` 0, ``KpiWorkerDown``), as a
    scrape of a stuck worker's thread timed out before; fed again, it answers."""
    registry = CollectorRegistry()
    Counter("kpi_streams_test_events", "live", registry=registry).inc()
    port = _free_port()
    server = serve_metrics(registry, EvaluatedOnLoop(), "127.0.0.1", port, stale_s=1.0)
    try:
        _get(port)
        began, (asked, answered, status, _), ended = _scrape_during_hold(port, 2.0, 4.0)
        # asked more than stale_s into the hold (no text came since), answered in it
        assert float(asked) - began > 1.0 and float(answered) < ended, (began, asked, ended)
        assert status == "503"
        assert "kpi_streams_test_events_total 1.0" in _get(port)  # fed again
    finally:
        server.shutdown()


def test_a_dead_metrics_process_is_started_again() -> None:
    registry = CollectorRegistry()
    Counter("kpi_streams_test_events", "live", registry=registry).inc()
    port = _free_port()
    server = serve_metrics(registry, EvaluatedOnLoop(), "127.0.0.1", port)
    try:
        first = server.proc
        assert "kpi_streams_test_events_total 1.0" in _get(port)
        os.kill(first.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while server.proc is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.proc is not first
        assert "kpi_streams_test_events_total 1.0" in _get(port)
    finally:
        server.shutdown()


# A worker (this process's stand-in) that serves metrics and prints its process's pid.
WORKER = """
import sys, time
from prometheus_client import CollectorRegistry
from streams.outputs.scrape import EvaluatedOnLoop, serve_metrics
server = serve_metrics(CollectorRegistry(), EvaluatedOnLoop(), "127.0.0.1", int(sys.argv[1]))
print(server.proc.pid, flush=True)
time.sleep(600)
"""


def test_the_metrics_process_ends_with_a_killed_worker() -> None:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(_free_port())],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        worker.kill()
        worker.communicate()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an orphan is reaped by init; a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
